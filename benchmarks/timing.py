"""Side-by-side timing: A and B interleaved in the same run, several repeats, medians.

A ratio of two times is only meaningful if both were measured under the same conditions. On a
shared 2-core machine the load changes from second to second, so the two functions are timed
*interleaved* (A B B A A B …, the order flipping every repeat so neither always runs first on a
warm or a cold cache), each sample long enough to swamp timer noise (a sample repeats a call as
many times as makes it last ≥ ``min_sample`` s, counted once per side), and the figure is
``median(A) / median(B)``. Garbage collection is off while timing.

Two clocks are read around every sample: wall-clock time and the process's CPU time. With BLAS
on one thread (npegg's default, and the benchmark's) the process computes on one thread, so its
CPU time is the wall time it would take on an idle machine, while the wall clock also counts the
time the process waited for a core that another process held. So ``run`` makes the figure the
ratio of CPU times (``CLOCK = "cpu"``) when BLAS has one thread, and keeps wall-clock time (the
default here) when it has more, where CPU time adds up the threads. Both ratios are always kept;
where they disagree the machine was busy.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

CLOCK = "wall"         # which clock gives the figure: "wall", or "cpu" (set by ``run`` on one thread)


@dataclass
class Comparison:
    """Per-call seconds of A and B on both clocks, one entry per repeat, and their median ratios."""

    wall_a: list = field(default_factory=list)
    wall_b: list = field(default_factory=list)
    cpu_a: list = field(default_factory=list)
    cpu_b: list = field(default_factory=list)
    number: tuple = (1, 1)           # calls per sample of A and of B
    clock: str = "wall"

    @property
    def wall_ratio(self) -> float:
        return float(np.median(self.wall_a) / np.median(self.wall_b))

    @property
    def cpu_ratio(self) -> float:
        return float(np.median(self.cpu_a) / np.median(self.cpu_b))

    @property
    def ratio(self) -> float:
        """The figure: median(A) / median(B) on ``clock``."""
        return self.cpu_ratio if self.clock == "cpu" else self.wall_ratio

    @property
    def median_a(self) -> float:
        return self.medians()[0]

    @property
    def median_b(self) -> float:
        return self.medians()[1]

    @property
    def spread(self) -> tuple:
        """(min, max) over repeats of the paired ratio A_k / B_k on ``clock``: how much the load moved."""
        a, b = (self.cpu_a, self.cpu_b) if self.clock == "cpu" else (self.wall_a, self.wall_b)
        r = np.asarray(a) / np.asarray(b)
        return float(r.min()), float(r.max())

    def medians(self) -> tuple:
        """(median A, median B) in seconds per call on ``clock``."""
        a, b = (self.cpu_a, self.cpu_b) if self.clock == "cpu" else (self.wall_a, self.wall_b)
        return float(np.median(a)), float(np.median(b))

    def as_dict(self) -> dict:
        ma, mb = self.medians()
        lo, hi = self.spread
        return {"ratio": self.ratio, "clock": self.clock, "wall_ratio": self.wall_ratio,
                "cpu_ratio": self.cpu_ratio, "median_a_s": ma, "median_b_s": mb,
                "paired_ratio_min": lo, "paired_ratio_max": hi,
                "repeats": len(self.wall_a), "calls_per_sample": list(self.number),
                "wall_a_s": self.wall_a, "wall_b_s": self.wall_b, "cpu_a_s": self.cpu_a, "cpu_b_s": self.cpu_b}


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
    res = Comparison(number=tuple(number), clock=CLOCK)
    sides = ((a, number[0], res.wall_a, res.cpu_a), (b, number[1], res.wall_b, res.cpu_b))
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
