"""The training runs behind ``npegg train``: one interface (``base_run.Run``), three kinds.

    base_run.py      Run: what a run holds and the methods the loop, the checkpoints and the CLI call
    float_run.py     FloatRun: the float ByteLM trained by EggRoll (``--mode float``)
    int_run.py       IntRun: the int8 EGG model trained by Q-EGGROLL (``--mode int``), and ``int_epoch``
    backprop_run.py  BackpropRun: the float ByteLM by backprop through time (``--method backprop``)
"""
from __future__ import annotations

from .backprop_run import BackpropRun
from .base_run import Run
from .float_run import FloatRun
from .int_run import IntRun

__all__ = ["Run", "FloatRun", "IntRun", "BackpropRun", "make_run"]


def make_run(cfg, corpus) -> Run:
    """The run for ``cfg.mode`` and ``cfg.method``: ``IntRun`` (int), ``BackpropRun`` (float, backprop)
    or ``FloatRun`` (float, es); cfg is validated."""
    if cfg.mode == "int":
        return IntRun(cfg, corpus)
    return BackpropRun(cfg, corpus) if cfg.method == "backprop" else FloatRun(cfg, corpus)
