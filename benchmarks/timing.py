"""Side-by-side timing: A and B interleaved in the same run, several repeats, medians.

A ratio of two wall-clock times is only meaningful if both were measured under the same
conditions. On a shared 2-core machine the load changes from second to second, so the two
functions are timed *interleaved* (A B B A A B …, the order flipping every repeat so neither
always runs first on a warm or a cold cache), each sample long enough to swamp timer noise
(a sample repeats the call ``number`` times, chosen once so that it lasts ≥ ``min_sample`` s),
and the figure is ``median(A) / median(B)``. Garbage collection is off while timing.
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
    number: int = 1

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
    def spread(self) -> tuple:
        """(min, max) over repeats of the paired ratio A_k / B_k: how much the load moved."""
        r = np.asarray(self.times_a) / np.asarray(self.times_b)
        return float(r.min()), float(r.max())

    def as_dict(self) -> dict:
        lo, hi = self.spread
        return {"ratio": self.ratio, "median_a_s": self.median_a, "median_b_s": self.median_b,
                "paired_ratio_min": lo, "paired_ratio_max": hi, "repeats": len(self.times_a),
                "calls_per_sample": self.number,
                "times_a_s": [float(t) for t in self.times_a], "times_b_s": [float(t) for t in self.times_b]}


def _sample(f: Callable, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        f()
    return (time.perf_counter() - t0) / number


def calls_per_sample(f: Callable, min_sample: float) -> int:
    """How many calls of ``f`` make a sample of at least ``min_sample`` seconds (f warmed up)."""
    t = _sample(f, 1)
    return max(1, int(np.ceil(min_sample / max(t, 1e-9))))


def compare(a: Callable, b: Callable, repeats: int = 7, min_sample: float = 0.02, warmup: int = 1) -> Comparison:
    """Time ``a`` and ``b`` interleaved; ``ratio`` is median(a) / median(b) per call."""
    for _ in range(warmup):
        a()
        b()
    number = max(calls_per_sample(a, min_sample), calls_per_sample(b, min_sample))
    res = Comparison(number=number)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(repeats):
            order = ((a, res.times_a), (b, res.times_b))
            for f, sink in order if k % 2 == 0 else order[::-1]:
                sink.append(_sample(f, number))
    finally:
        if enabled:
            gc.enable()
    return res
