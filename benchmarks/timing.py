"""Side-by-side timing: A and B interleaved in the same run, several repeats, medians.

A ratio of two wall-clock times is only meaningful if both were measured under the same
conditions. On a shared 2-core machine the load changes from second to second, so the two
functions are timed *interleaved* (A B B A A B …, the order flipping every repeat so neither
always runs first on a warm or a cold cache), each sample long enough to swamp timer noise
(a sample repeats a call as many times as makes it last ≥ ``min_sample`` s, counted once per side),
and the figure is ``median(A) / median(B)`` of wall-clock times. Garbage collection is off
while timing.

The process CPU time of every sample is kept too (``cpu_ratio``): with BLAS on one thread it
equals the wall time on an idle machine, and it is much less disturbed by other processes
competing for the cores, so a large gap between the two ratios says the machine was busy.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Comparison:
    """Per-call seconds of A and B, one entry per repeat, and their median ratio."""

    times_a: list = field(default_factory=list)
    times_b: list = field(default_factory=list)
    cpu_a: list = field(default_factory=list)
    cpu_b: list = field(default_factory=list)
    number: tuple = (1, 1)           # calls per sample of A and of B

    @property
    def median_a(self) -> float:
        return float(np.median(self.times_a))

    @property
    def median_b(self) -> float:
        return float(np.median(self.times_b))

    @property
    def ratio(self) -> float:
        """median(A) / median(B)."""
        return self.median_a / self.median_b

    @property
    def cpu_ratio(self) -> float:
        """median(CPU time of A) / median(CPU time of B)."""
        return float(np.median(self.cpu_a) / np.median(self.cpu_b))

    @property
    def spread(self) -> tuple:
        """(min, max) over repeats of the paired ratio A_k / B_k: how much the load moved."""
        r = np.asarray(self.times_a) / np.asarray(self.times_b)
        return float(r.min()), float(r.max())

    def as_dict(self) -> dict:
        lo, hi = self.spread
        return {"ratio": self.ratio, "median_a_s": self.median_a, "median_b_s": self.median_b,
                "cpu_ratio": self.cpu_ratio,
                "paired_ratio_min": lo, "paired_ratio_max": hi, "repeats": len(self.times_a),
                "calls_per_sample": self.number,
                "times_a_s": [float(t) for t in self.times_a], "times_b_s": [float(t) for t in self.times_b],
                "cpu_a_s": [float(t) for t in self.cpu_a], "cpu_b_s": [float(t) for t in self.cpu_b]}


def _sample(f: Callable, number: int) -> tuple:
    """(wall seconds, process CPU seconds) per call, over ``number`` calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        f()
    return (time.perf_counter() - t0) / number, (time.process_time() - c0) / number


def compare(a: Callable, b: Callable, repeats: int = 7, min_sample: float = 0.02, warmup: int = 1,
            budget: float | None = None, min_repeats: int = 3) -> Comparison:
    """Time ``a`` and ``b`` interleaved; ``ratio`` is median(a) / median(b) per call.

    The warm-up calls (at least one each) also measure how many calls make one sample of each.
    ``budget`` (seconds): use fewer repeats, down to ``min_repeats``, where ``repeats`` samples
    of both would take longer than that (for the slowest rows).
    """
    first = [(_sample(a, 1)[0], _sample(b, 1)[0]) for _ in range(max(1, warmup))]
    fastest = [max(min(t), 1e-9) for t in zip(*first)]                       # per side, seconds
    number = [max(1, int(np.ceil(min_sample / t))) for t in fastest]       # calls per sample
    if budget is not None:
        per_repeat = sum(n * t for n, t in zip(number, fastest))
        repeats = max(min_repeats, min(repeats, int(budget // per_repeat)))
    res = Comparison(number=tuple(number))
    sides = ((a, number[0], res.times_a, res.cpu_a), (b, number[1], res.times_b, res.cpu_b))
    enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(repeats):
            for f, n, walls, cpus in sides if k % 2 == 0 else sides[::-1]:
                wall, cpu = _sample(f, n)
                walls.append(wall)
                cpus.append(cpu)
    finally:
        if enabled:
            gc.enable()
    return res
