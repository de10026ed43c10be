"""Which members each worker evaluates: fixed member chunks, dealt out in contiguous runs.

A population of P members is cut into chunks of C members (the last may be shorter)::

    chunk k = members [k·C, min((k+1)·C, P))          C a multiple of the group size (so of 2)

C depends only on the population, never on the number of workers, and every engine (the
one-process twin included) evaluates exactly these chunks, one forward call per chunk. A chunk's
scores are therefore the same bits on any worker, whatever else that worker evaluates: nothing in
a forward can see how many members other calls hold (BLAS may pick another kernel for another
row count, so that is the property that matters). With W workers and K chunks, worker w gets the
contiguous run of chunks [⌊wK/W⌋, ⌊(w+1)K/W⌋); antithetic partners and groups never straddle two
workers, and the loads differ by at most one chunk.
"""
from __future__ import annotations

import os

DEFAULT_CHUNK = 64          # members per forward call, before rounding to the group size


def chunk_size(pop_size: int, group_size: int = 2, target: int = DEFAULT_CHUNK) -> int:
    """C = g · ⌈min(target, P/8) / g⌉ with g = max(group_size, 2): whole groups, at least eight
    chunks when P allows (so small populations still spread over a few workers)."""
    g = max(int(group_size), 2)
    want = max(1, min(int(target), int(pop_size) // 8))
    return g * -(-want // g)


def member_chunks(pop_size: int, chunk: int) -> list[slice]:
    """The chunks [k·C, min((k+1)·C, P)) as slices over the population axis."""
    if chunk < 1 or pop_size < 1:
        raise ValueError(f"need pop_size >= 1 and chunk >= 1, got {pop_size}, {chunk}")
    return [slice(lo, min(lo + chunk, pop_size)) for lo in range(0, pop_size, chunk)]


def deal(chunks: list[slice], workers: int) -> list[list[slice]]:
    """Worker w's chunks: the contiguous run [⌊wK/W⌋, ⌊(w+1)K/W⌋) of the K chunks."""
    k = len(chunks)
    if not 1 <= workers <= k:
        raise ValueError(f"workers must be between 1 and the number of member chunks ({k}); got {workers}")
    return [chunks[w * k // workers:(w + 1) * k // workers] for w in range(workers)]


def usable_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity`` where the OS has it), ≥ 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
