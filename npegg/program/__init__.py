"""The ``npegg`` program: train, evaluate, sample and export a byte-level language model.

Everything here uses the ES library one folder up (``npegg.noiser``, ``npegg.models``,
``npegg.es``, ...); nothing in the library imports this package. Files, checkpoints, progress
lines and the command line live here and only here.
"""
