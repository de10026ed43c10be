"""The noise table and index hash: a published contract, so its numbers are pinned by formula."""
import numpy as np
import pytest

from npegg import keys as K
from npegg.noise import (TABLE_SCALE, Int8NoiseTable, NoiseTable, splitmix64, start_indices,
                         table_entries)
from parity import group, load, parity_files


def _entry_by_hand(seed, i):
    """Table entry i, one Python integer at a time, straight from the module docstring."""
    mask = (1 << 64) - 1
    x = (seed + (i + 1) * 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    s = sum((x >> (8 * k)) & 0xFF for k in range(8))
    return np.float32(s - 1020) * TABLE_SCALE


def test_table_matches_its_formula():
    idx = [0, 1, 2, 1000, 65535]
    got = table_entries(7, 0, 65536)[idx]
    np.testing.assert_array_equal(got, [_entry_by_hand(7, i) for i in idx])
    assert TABLE_SCALE == np.float32(1 / np.sqrt(np.float64(43690)))


def test_table_moments_are_unit_normal_like():
    t = NoiseTable(seed=0, log2_size=20).table
    # 2²⁰ samples: SE of the mean ≈ 1e-3, of the variance ≈ 1.4e-3
    assert abs(t.mean()) < 5e-3 and abs(t.var() - 1) < 7e-3
    assert abs(t.min()) < 4.9 and t.max() < 4.9
    assert abs((t.astype(np.float64) ** 4).mean() - 2.85) < 0.03      # Irwin–Hall(8) kurtosis 3 − 1.2/8


def test_int8_table_is_trunc_of_16x_float():
    f = NoiseTable(seed=3, log2_size=16).table
    i8 = Int8NoiseTable(seed=3, log2_size=16).table
    assert i8.dtype == np.int8
    np.testing.assert_array_equal(i8, np.trunc(f * np.float32(16)).astype(np.int8))


def test_same_inputs_same_bits_and_antithetic_pairs_share_noise():
    t1, t2 = NoiseTable(seed=1, log2_size=16), NoiseTable(seed=1, log2_size=16)
    key, members = K.key(5), np.arange(12)
    a1, b1 = t1.lowrank(key, 3, members, (7, 5), 2, 1)
    a2, b2 = t2.lowrank(key, 3, members[::-1], (7, 5), 2, 1)                  # other order, other object
    np.testing.assert_array_equal(a1, a2[::-1])
    np.testing.assert_array_equal(b1[0::2], b1[1::2])                          # 2k and 2k+1 share unit noise
    assert not np.array_equal(a1[0], a1[2])
    one = t1.lowrank(key, 3, np.array([9]), (7, 5), 2, 1)[0]                   # any member alone
    np.testing.assert_array_equal(one[0], a1[9])
    assert not a1.flags.writeable                                             # cached slices are read-only


@pytest.mark.parametrize("reuse", [0, 1, 2, 3])
def test_noise_reuse_epochs(reuse):
    t, key = NoiseTable(seed=0, log2_size=16), K.key(2)
    e = [t.full(key, ep, np.array([4]), (9,), reuse)[0] for ep in range(7)]
    for i in range(7):
        for j in range(7):
            same = reuse == 0 or i // reuse == j // reuse
            assert np.array_equal(e[i], e[j]) == same, (i, j)


@pytest.mark.parametrize("path", parity_files("float_eggroll*.npz"))
def test_noise_reuse_pattern_matches_reference(path):
    """Which epochs share noise (reference's recorded A for one thread) matches npegg's."""
    u = group(load(path), "noise_reuse_unit")
    t, key = NoiseTable(seed=0, log2_size=16), K.key(0)
    for name in sorted({k.split("/")[0] for k in u if k.startswith("nr")}):
        ref = u[name + "/A"]
        ours = [t.lowrank(key, int(ep), np.array([int(u["thread"])]), ref.shape[1:], 1, int(name[2:]))[0][0]
                for ep in u["epochs"]]
        for i in range(len(ref)):
            for j in range(len(ref)):
                assert np.array_equal(ref[i], ref[j]) == np.array_equal(ours[i], ours[j]), (name, i, j)


@pytest.mark.parametrize("path", parity_files("int8_units*.npz"))
def test_start_index_hash_matches_reference(path):
    v = load(path)
    h = group(v, "hash")
    for i, k0 in enumerate(h["K0"]):
        # start_indices folds the epoch into a key; feed K0 directly through a key whose fold gives it
        q = (h["thread"].astype(np.int64) >> 1).astype(np.uint32)
        mixed = ((q >> np.uint32(16)) ^ q) * np.uint32(0x45D9F3B)
        np.testing.assert_array_equal((np.uint32(k0) ^ mixed).astype(np.int64) & (2**30 - 1), h["start"][i])
    nr = group(v, "noise_reuse")
    for name in sorted({k.split("/")[0] for k in nr if k.startswith("nr")}):
        starts = nr[name + "/start"]                                              # (epochs, threads)
        for ep in range(starts.shape[0]):
            got = start_indices(nr["key"], ep, np.arange(starts.shape[1]), int(name[2:]), 2**30)
            np.testing.assert_array_equal(got, starts[ep])
    np.testing.assert_array_equal(K.fold_in(nr["key"], np.arange(len(nr["K0_by_true_epoch"])))[:, 0],
                                  nr["K0_by_true_epoch"])


def test_wrap_and_clamp_overflow():
    t = NoiseTable(seed=0, log2_size=8, overflow="wrap")
    s = t.slices(np.array([250]), 10)[0]
    np.testing.assert_array_equal(s, np.concatenate([t.table[250:], t.table[:4]]))
    c = NoiseTable(seed=0, log2_size=8, overflow="clamp")
    np.testing.assert_array_equal(c.slices(np.array([250]), 10)[0], c.table[246:256])
    with pytest.raises(ValueError, match="log2_size"):
        t.slices(np.array([0]), 300)


def test_splitmix64_reference_value():
    # splitmix64 with state 0: the first output is the well-known 0xE220A8397B1DCDAF
    assert int(splitmix64(np.array([0x9E3779B97F4A7C15], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
