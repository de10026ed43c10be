"""What the PyTorch port adapters share: a ``torch`` stand-in that serves injected noise to a port's
``torch.randn`` calls, and the member ↔ row maps of the two antithetic layouts.

Every port draws its noise with ``torch.randn`` from the module-level name ``torch`` of its own
module. ``RandnFeed`` is put in that name's place (``patched``): every attribute is the real
torch's except ``randn``, which returns the next queued array after checking that the port asks
for exactly its shape (so a port that asks for another shape or another number of draws than
the adapter expects fails loudly, instead of silently using the wrong noise). Everything the
port computes from the draw (scales, signs, splits into factors, the update) is its own code.
"""
from __future__ import annotations

import contextlib
from collections import deque

import numpy as np
import torch


class RandnFeed:
    """A stand-in for the ``torch`` module whose ``randn`` pops queued arrays (see the module)."""

    def __init__(self, queue=()):
        self.queue = deque(queue)
        self.asked = []                 # the shapes the port asked for, in order

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, *size, generator=None, device=None, dtype=None, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        self.asked.append(shape)
        if not self.queue:
            raise AssertionError(f"the port drew more noise than injected (asked for {shape})")
        arr = np.asarray(self.queue.popleft())
        if tuple(arr.shape) != shape:
            raise AssertionError(f"the port asked for noise of shape {shape}; the injected draw has {arr.shape}")
        return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype or torch.float32)

    def check_used(self):
        """AssertionError unless the port drew every queued array."""
        if self.queue:
            raise AssertionError(f"{len(self.queue)} injected draws were never asked for (asked: {self.asked})")


@contextlib.contextmanager
def patched(module, feed: RandnFeed):
    """``module.torch`` is ``feed`` inside the block, the real torch again after it."""
    saved = module.torch
    module.torch = feed
    try:
        yield feed
    finally:
        module.torch = saved


def is_full_pairs(members) -> bool:
    """True when members are 0..P−1 with P even: every antithetic pair (2k, 2k+1) complete."""
    m = np.asarray(members)
    return m.size % 2 == 0 and np.array_equal(m, np.arange(m.size))


def half_split_order(p: int) -> np.ndarray:
    """Row j of a port that puts partners at (i, i + P/2) holds member order[j]: 2j, then 2j + 1."""
    half = np.arange(p // 2)
    return np.concatenate([2 * half, 2 * half + 1])


def signs(members) -> np.ndarray:
    """+1 for even member ids, −1 for odd (float32)."""
    return (1 - 2 * (np.asarray(members) & 1)).astype(np.float32)


def t(a) -> torch.Tensor:
    """A float32 (or int64) torch tensor from a NumPy array."""
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(a if a.dtype == np.int64 else a.astype(np.float32)))
