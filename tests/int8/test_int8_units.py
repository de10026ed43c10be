"""Int8 primitives against the reference's unit vectors (``int8_units*.npz``), bit for bit.

One test per key group of the file (ln, division, mm, emb, standard, gru, ll, hash, noise_reuse);
every size and setting is read from the file, so new files in the same format need no changes.
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg import keys, noise
from npegg.int8 import fixedpoint as fp
from npegg.int8 import intmm, loglik
from parity import group, load, parity_files

UNITS = parity_files("int8_units*.npz")


def subgroups(vec: dict, prefix: str) -> list[str]:
    """Names of the next path level under ``prefix/`` (e.g. 'n16', 'n48' under 'ln')."""
    return sorted({k.split("/")[0] for k in group(vec, prefix)})


def cases(g: dict, starts: str) -> list[str]:
    """Names of the sub-groups of ``g`` (keys with a '/') whose name starts with ``starts``."""
    return sorted({k.split("/")[0] for k in g if "/" in k and k.startswith(starts)})


def assert_same(got, want):
    """Bit-exact: same dtype, same values."""
    got = np.asarray(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert np.array_equal(got, want)


@pytest.fixture(scope="module", params=UNITS)
def units(request):
    return load(request.param)


def test_ln_matches_reference(units):
    """EGG_LN: floored mean |x|, floor division, row 0 gives −1/−2."""
    for name in subgroups(units, "ln"):
        g = group(units, f"ln/{name}")
        assert_same(fp.egg_ln(g["x"], g["w"]), g["out"])


def test_division_table_and_formula_match_reference(units):
    """The DIVISION table (built as XLA does) equals the recorded rows and the closed form."""
    g = group(units, "division")
    table = fp.division_table()
    assert_same(table[:, g["cols_u16"]], g["table_at_cols"])
    assert np.array_equal(g["cols_u16"].view(np.int16), g["cols_as_int16"])
    for key, row in g.items():
        if key.startswith("row") and key.endswith("_full"):
            assert_same(table[int(key[3:-5])], row)
    # formula twin over the full index range: 256 rows × 65536 int16 numerators
    numerators = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)
    assert_same(fp.ln_divide(numerators[None, :], np.arange(256)[:, None]), table)


def test_mm_matches_reference(units):
    """do_mm unperturbed and perturbed (rank, sigma_shift from the file), fast and dense twin."""
    for dims in subgroups(units, "mm"):
        g = group(units, f"mm/{dims}")
        assert_same(intmm.do_mm(g["W"], g["x"]), g["out"])
        assert_same(intmm.do_mm_dense(g["W"], g["x"]), g["out"])
        for case in cases(g, "pert"):
            c = group(g, case)
            x = np.broadcast_to(g["x"], (len(c["threads"]),) + g["x"].shape)  # (P, 15, I): x shared
            assert c["A"].shape[-1] == c["rank"]
            assert_same(intmm.do_mm(g["W"], x, c["A"], c["B"], int(c["sigma_shift"])), c["out"])
            assert_same(intmm.do_mm_dense(g["W"], x, c["A"], c["B"], int(c["sigma_shift"])), c["out"])


def test_emb_matches_reference(units):
    """do_emb: unperturbed returns the row, perturbed clips after the floored low-rank term."""
    for dims in subgroups(units, "emb"):
        g = group(units, f"emb/{dims}")
        assert_same(intmm.do_emb(g["E"], g["tokens"]), g["out"])
        for case in cases(g, "pert"):
            c = group(g, case)
            tokens = np.broadcast_to(g["tokens"], (len(c["threads"]),) + g["tokens"].shape)
            assert_same(intmm.do_emb(g["E"], tokens, c["A"], c["B"], int(c["sigma_shift"])), c["out"])


def test_standard_matches_reference(units):
    """get_noisy_standard: clip(p + ⌊E / 2^(4+σ)⌋)."""
    for shape in subgroups(units, "standard"):
        g = group(units, f"standard/{shape}")
        assert intmm.get_noisy_standard(g["param"]) is g["param"]
        for case in cases(g, ""):
            c = group(g, case)
            assert_same(intmm.get_noisy_standard(g["param"], c["E"], int(c["sigma_shift"])), c["out"])


def test_gru_matches_reference(units):
    """EGG_GRU cell evaluations, each row with its own weights (row = population member)."""
    g = group(units, "gru")

    def mm(name, v):  # per-member weights (P, O, I): exact int64 einsum, then the usual rescale
        acc = np.einsum("pi,poi->po", v.astype(np.int64), g[name].astype(np.int64))
        return intmm.rescale_mm(acc, v.shape[-1])

    assert_same(fp.egg_gru(g["x"], g["state"], mm, g["bf"], g["bh"]), g["out"])


def test_ll_matches_reference(units):
    """EXP2 table (exact integer formula and the float construction), LOG2 entries, int_ll."""
    g = group(units, "ll")
    assert_same(loglik.exp2_table(), g["EXP2TABLE"])
    assert_same(loglik.exp2_table_float(), g["EXP2TABLE"])
    assert_same(loglik.log2_entry(g["log2table_index"]), g["log2table_value"])
    for vocab in cases(g, "V"):
        c = group(g, vocab)
        assert_same(loglik.exp2_sum(c["logits"]), c["expsum"])
        assert_same(loglik.int_ll(c["logits"], c["target"]), c["ll"])


def test_hash_matches_reference(units):
    """start = (K0 ⊕ h(thread >> 1)) mod 2³⁰, checked through ``npegg.noise.start_indices``.

    ``start_indices`` takes a leaf key, not K0; since start ⊕ K0 = h does not depend on K0,
    compare the hash part: (ours ⊕ our K0) with (recorded start ⊕ recorded K0), both mod 2³⁰.
    """
    g = group(units, "hash")
    mask = (1 << 30) - 1
    some_key = keys.key(0)
    our_k0 = int(keys.fold_in(some_key, 0)[0])
    ours = noise.start_indices(some_key, 0, g["thread"], 0, 1 << 30) ^ (our_k0 & mask)      # (threads,)
    want = g["start"].astype(np.int64) ^ (g["K0"].astype(np.int64)[:, None] & mask)        # (K0s, threads)
    assert np.array_equal(np.broadcast_to(ours, want.shape), want)


def test_noise_reuse_start_indices_match_reference(units):
    """Start indices per true epoch ⌊e / noise_reuse⌋ (0: the same noise every epoch)."""
    g = group(units, "noise_reuse")
    k0 = keys.fold_in(g["key"], np.arange(len(g["K0_by_true_epoch"])))[:, 0]
    assert np.array_equal(k0, g["K0_by_true_epoch"])
    for name in cases(g, "nr"):
        want = g[f"{name}/start"]                                  # (epochs, threads)
        reuse = int(name[2:])
        got = np.stack([noise.start_indices(g["key"], e, np.arange(want.shape[1]), reuse, 1 << 30)
                        for e in range(want.shape[0])])
        assert np.array_equal(got, want)
