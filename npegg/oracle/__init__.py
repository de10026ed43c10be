"""Golden vectors of npegg's own computations, for other backends to check themselves against.

``int8_vectors`` writes files in the reference's ``egg_fwd`` / ``qegg_update`` formats (int8 EGG
model and Q-EGGROLL); ``float_vectors`` writes the ``float_eggroll`` format (float EggRoll on an
MLP); ``lm_vectors`` writes ``float_lm_<cell>`` files (the float byte language models of ``npegg
train``). Formats: ``tests/reference/README.md`` and ``docs/vectors.md``; every key, dtype and shape
machine-readably in ``vectors.schema.json``, which ``schema.validate`` checks. ``vectorfile``
reads files safely (declared sizes before inflating, no pickle, the schema) and writes them with
``format_version``.
"""
