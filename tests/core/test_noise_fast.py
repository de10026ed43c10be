"""The noise table's fast paths against their slow twins: cached window views, memoized hash."""
import numpy as np
import pytest

from npegg import keys as K
from npegg.noise import HASH_MULT, NoiseTable, start_indices


def _slice_by_index(t: NoiseTable, start: int, size: int) -> np.ndarray:
    """One member's slice by explicit indices (module docstring, step 3): the slow twin."""
    n = t.size
    if t.overflow == "clamp":
        return t.table[min(start, n - size) + np.arange(size)]
    return t.table[(start + np.arange(size)) % n]


@pytest.mark.parametrize("overflow", ["wrap", "clamp"])
def test_slices_equal_explicit_indexing_for_every_size_order(overflow):
    """Views are cached per size; growing, shrinking and repeated sizes give the same bits."""
    t = NoiseTable(seed=3, log2_size=14, overflow=overflow)
    rng = np.random.default_rng(0)
    for size in [5, 5000, 5, 1 << 14, 17, 5000, 1]:       # 5000 and 2¹⁴ outgrow the first 4096-entry pad
        starts = np.concatenate([rng.integers(0, t.size, 20), [0, t.size - 1, t.size - size]])
        got = t.slices(starts, size)
        assert got.shape == (len(starts), size) and got.dtype == np.float32
        want = np.stack([_slice_by_index(t, int(s), size) for s in starts])
        np.testing.assert_array_equal(got, want)


def test_slices_are_copies_and_the_table_is_untouched():
    t = NoiseTable(seed=1, log2_size=10)
    before = t.table.copy()
    s = t.slices(np.array([7, 7]), 16)
    s[0] = 0                                             # a copy: writable, and not shared
    np.testing.assert_array_equal(s[1], before[7:23])
    np.testing.assert_array_equal(t.table, before)


@pytest.mark.parametrize("reuse", [0, 1, 3])
def test_memoized_start_indices_equal_the_formula(reuse):
    """start = (fold_in(k, te)[0] ⊕ hash(n >> 1)) mod N, recomputed without any cache."""
    key = K.split(K.key(5), 4)[2]
    members = np.arange(0, 4000, 7)
    for epoch in [0, 1, 2, 5, 0, 1]:                      # repeats hit the memo
        te = 0 if reuse == 0 else epoch // reuse
        k0 = int(K.fold_in(key, te)[0])
        q = (members >> 1).astype(np.uint64)
        h = ((((q >> 16) ^ q) * HASH_MULT) & 0xFFFFFFFF).astype(np.int64)
        want = (k0 ^ h) & ((1 << 20) - 1)
        np.testing.assert_array_equal(start_indices(key, epoch, members, reuse, 1 << 20), want)


def test_the_noise_a_table_hands_out_is_fresh_or_read_only():
    """What lowrank/full return may be scaled in place by the caller when writeable: never the cache."""
    key = np.array([1, 2], np.uint32)
    for t in (NoiseTable(seed=1, log2_size=12), NoiseTable(seed=1, log2_size=12, cache_bytes=0)):
        first = t.full(key, 0, np.arange(4), (6,), 1)
        if first.flags.writeable:
            first *= 0
        assert np.array_equal(t.full(key, 0, np.arange(4), (6,), 1), NoiseTable(seed=1, log2_size=12).full(
            key, 0, np.arange(4), (6,), 1)) and np.any(t.full(key, 0, np.arange(4), (6,), 1) != 0)
