"""Properties of the int8 primitives: ranges and dtypes, floor-vs-truncation edges, exact matmul.

Each property is checked on hypothesis-generated int8 inputs that include −128 and ±127; the
pinned cases below each property are the edges docs/int8-spec.md marks ⚠.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npegg.int8 import fixedpoint as fp
from npegg.int8 import intmm, loglik

FEW = settings(deadline=None, max_examples=60)
INT8 = st.integers(-128, 127)


def int8_arrays(shape):
    return hnp.arrays(np.int8, shape, elements=INT8)


def in_range(y) -> bool:
    return y.dtype == np.int8 and int(y.min()) >= -127 and int(y.max()) <= 127


@pytest.fixture(scope="module")
def table():
    return fp.division_table()


# -- scalar helpers ---------------------------------------------------------------------------------
@FEW
@given(hnp.arrays(np.int32, 16, elements=st.integers(-2**31, 2**31 - 1)), st.integers(0, 30))
def test_floor_shift_is_floor_division(v, k):
    """a >> k = ⌊a / 2ᵏ⌋, also for negative a (never truncation toward zero)."""
    assert np.array_equal(fp.floor_shift(v, k), [int(a) // 2**k for a in v])


def test_floor_shift_pinned_negatives():
    """−1 >> 4 = −1, −128 >> 1 = −64, −17 >> 4 = −2 (truncation would give 0, −64, −1)."""
    assert fp.floor_shift(np.int32(-1), 4) == -1
    assert fp.floor_shift(np.int8(-128), 1) == -64
    assert fp.floor_shift(np.int32(-17), 4) == -2


@FEW
@given(hnp.arrays(np.int32, 16, elements=st.integers(-2**24, 2**24)), st.integers(1, 1 << 12))
def test_floor_div_is_floor_division(v, d):
    """floor_div (a shift when d = 2ⁿ) rounds toward −∞: −1 // 80 = −1."""
    assert np.array_equal(fp.floor_div(v, d), [int(a) // d for a in v])
    assert fp.floor_div(np.int32(-1), 80) == -1


def test_floor_div_small_equals_floor_divide_on_its_whole_domain():
    """The reciprocal-multiply division == np.floor_divide for every |v| ≤ 2¹⁵, 1 ≤ d ≤ 255."""
    v = np.arange(-(1 << 15), (1 << 15) + 1, dtype=np.int64)[None, :]
    d = np.arange(1, 256, dtype=np.int64)[:, None]
    assert np.array_equal(fp.floor_div_small(v, d), np.floor_divide(v, d))


@FEW
@given(int8_arrays(32), int8_arrays(32), int8_arrays(32))
def test_clipped_add_saturates_symmetrically(a, b, c):
    """clip(a + b + c) in int32, then int8 in [−127, 127]; −128 never comes out."""
    y = fp.clipped_add(a, b, c)
    assert in_range(y)
    assert np.array_equal(y, np.clip(a.astype(int) + b + c, -127, 127))
    assert fp.clipped_add(np.int8(-128), np.int8(0)) == -127


@FEW
@given(hnp.arrays(np.int32, 32, elements=st.integers(-2**31, 2**31 - 1)))
def test_wrap8_is_modular(v):
    """The int32 → int8 cast wraps: ((v + 128) mod 256) − 128."""
    assert np.array_equal(fp.wrap8(v), [((int(a) + 128) % 256) - 128 for a in v])


def test_isq_is_the_reference_int_sqrt():
    """isq(n) = int(np.sqrt(n)) (docs/int8-spec.md §0), on every n below 2²⁰ and the sizes listed there."""
    n = np.arange(1 << 20)
    assert np.array_equal([fp.isq(i) for i in range(1 << 20)], np.sqrt(n).astype(int))
    for size, root in [(16, 4), (20, 4), (24, 4), (32, 5), (48, 6), (64, 8), (96, 9), (128, 11),
                       (192, 13), (256, 16), (512, 22), (1024, 32)]:
        assert fp.isq(size) == root == int(np.sqrt(size))


# -- layer norm -------------------------------------------------------------------------------------
@FEW
@given(int8_arrays((4, 24)), int8_arrays((4, 24)))
def test_ln_in_range_and_equals_table(table, x, w):
    """EGG_LN maps any int8 x, w (−128 included) to [−127, 127], and formula == lookup."""
    y = fp.egg_ln(x, w)
    assert in_range(y)
    assert np.array_equal(y, fp.egg_ln_by_table(x, w, table))


def test_ln_zero_abs_mean_gives_minus_one_and_minus_two(table):
    """Σ|x| < H selects DIVISION row 0: −1 where x·w = 0, −2 elsewhere (also for all-zero x)."""
    h = 16
    x = np.zeros((3, h), np.int8)
    x[1, :3] = [5, -3, 0]              # Σ|x| = 8 < 16
    x[2, 0] = -1                       # Σ|x| = 1
    w = np.full(h, 16, np.int8)
    y = fp.egg_ln(x, w)
    assert np.all(y[0] == -1)
    assert list(y[1, :4]) == [-2, -2, -1, -1]
    assert y[2, 0] == -2 and np.all(y[2, 1:] == -1)
    assert np.array_equal(y, fp.egg_ln_by_table(x, w, table))


def test_ln_divides_by_floor_not_truncation():
    """Negative numerators round down: x·w = −1 over m = 2 gives −1, not 0."""
    x = np.array([[-1, 1, 2, 2]], np.int8)      # Σ|x| = 6, H = 4, m = 1
    w = np.array([1, 1, 1, 1], np.int8)
    assert list(fp.egg_ln(x, w)[0]) == [-1, 1, 2, 2]
    x = np.array([[-1, 3, 3, 3]], np.int8)      # Σ|x| = 10, m = 2: −1 // 2 = −1, 3 // 2 = 1
    assert list(fp.egg_ln(x, w)[0]) == [-1, 1, 1, 1]


def test_ln_minus_128_wraps_in_abs_like_the_reference():
    """jnp.abs(int8 −128) = −128: the abs-sum counts it as −128 (unreachable in the model)."""
    x = np.array([[-128] + [127] * 3], np.int8)  # Σ = −128 + 381 = 253 (not 509), m = 63
    w = np.full(4, 1, np.int8)
    assert list(fp.egg_ln(x, w)[0]) == [-128 // 63, 127 // 63, 127 // 63, 127 // 63]


# -- matmuls ----------------------------------------------------------------------------------------
@FEW
@given(st.data())
def test_exact_matmul_equals_int64_matmul(data):
    """BLAS-backed product == int64 product, on random and extreme int8/int16/int32 inputs."""
    dtype, lo, hi = data.draw(st.sampled_from([(np.int8, -128, 127), (np.int16, -2**15, 2**15 - 1),
                                               (np.int32, -2**20, 2**20)]))
    m, k, n = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 300), st.integers(1, 6)))
    extreme = st.sampled_from([lo, hi, 0, -1, 1])
    elems = data.draw(st.sampled_from([st.integers(lo, hi), extreme]))
    a = data.draw(hnp.arrays(dtype, (m, k), elements=elems))
    b = data.draw(hnp.arrays(dtype, (k, n), elements=elems))
    want = a.astype(np.int64) @ b.astype(np.int64)
    got = intmm.exact_matmul(a, b)
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_exact_matmul_at_the_float32_bound():
    """K·max|a|·max|b| just below 2²⁴ runs in float32 and is exact at its worst case."""
    k = 1040                                          # 1040 · 127 · 127 = 16 774 160 < 2²⁴
    assert intmm.exact_dtype(k, 127, 127) is np.float32
    a = np.full((2, k), 127, np.int8)
    a[1] = -127
    got = intmm.exact_matmul(a, np.full((k, 3), 127, np.int8))
    assert np.array_equal(got, np.full((2, 3), 1040 * 127 * 127) * np.array([[1], [-1]]))
    a = np.full((1, 1023), -128, np.int8)             # int8 dtypes alone prove 1023 · 128² < 2²⁴
    assert intmm.exact_matmul(a, a.T)[0, 0] == 1023 * 128 * 128


def test_exact_matmul_at_and_past_the_float32_bound_uses_float64():
    """Bound = 2²⁴ exactly (K = 1024, all −128) is not < 2²⁴: float64. Past it, float32 is wrong."""
    assert intmm.exact_dtype(1024, 128, 128) is np.float64
    a = np.full((1, 1024), -128, np.int8)
    assert intmm.exact_matmul(a, a.T)[0, 0] == 1 << 24
    a = np.concatenate([a, [[1]]], axis=1).astype(np.int8)      # Σ = 2²⁴ + 1, odd: no float32
    assert intmm.exact_matmul(a, a.T)[0, 0] == (1 << 24) + 1
    forced = (a.astype(np.float32) @ a.T.astype(np.float32)).astype(np.int64)
    assert forced[0, 0] != (1 << 24) + 1                         # why the guard exists


def test_exact_matmul_at_the_float64_bound_falls_back_to_int64():
    """Bound ≥ 2⁵³ uses int64; just below it float64 is still exact."""
    assert intmm.exact_dtype(2, 2**26, 2**26 - 1) is np.float64    # 2⁵³ − 2²⁷ < 2⁵³
    assert intmm.exact_dtype(2, 2**26, 2**26) is np.int64          # = 2⁵³
    a = np.array([[2**26, 2**26 - 1]], np.int64)
    b = np.array([[2**26 - 1], [2**26 - 1]], np.int64)
    assert intmm.exact_matmul(a, b)[0, 0] == (2**26 + 2**26 - 1) * (2**26 - 1)
    a = np.array([[2**27, 1]], np.int64)
    b = np.array([[2**26], [1]], np.int64)                          # Σ = 2⁵³ + 1: no float64
    assert intmm.exact_matmul(a, b)[0, 0] == 2**53 + 1
    assert int((a.astype(np.float64) @ b.astype(np.float64))[0, 0]) != 2**53 + 1


@FEW
@given(st.data())
def test_do_mm_in_range_and_equals_dense_twin(data):
    """do_mm (BLAS, low-rank) == materialised perturbed weight in int64, output int8 ±127."""
    p, i, o, r = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 70), st.integers(1, 9),
                                     st.integers(1, 2)))
    sigma = data.draw(st.integers(0, 8))
    w = data.draw(int8_arrays((o, i)))
    x = data.draw(int8_arrays((p, 2, i)))
    a = data.draw(hnp.arrays(np.int8, (p, o, r), elements=st.integers(-86, 86)))
    b = data.draw(hnp.arrays(np.int8, (p, i, r), elements=st.integers(-86, 86)))
    y = intmm.do_mm(w, x, a, b, sigma)
    assert in_range(y) and y.shape == (p, 2, o)
    assert np.array_equal(y, intmm.do_mm_dense(w, x, a, b, sigma))
    assert np.array_equal(intmm.do_mm(w, x), intmm.do_mm_dense(w, x))


def test_do_mm_floors_negative_sums():
    """acc = −1 over divisor 16·⌊√32⌋ = 80 gives −1, not 0; 192 inputs divide by 208, not 16·√192."""
    w = np.zeros((1, 32), np.int8)
    w[0, 0] = 1
    x = np.zeros((1, 32), np.int8)
    x[0, 0] = -1
    assert intmm.do_mm(w, x)[0, 0] == -1
    assert intmm.mm_divisor(192) == 208 and intmm.mm_divisor(48) == 96


@FEW
@given(int8_arrays((7, 5)), st.data())
def test_do_emb_in_range_when_perturbed(e, data):
    """Perturbed embedding rows are clipped to ±127; unperturbed rows come back as stored."""
    tokens = data.draw(hnp.arrays(np.int64, (2, 4), elements=st.integers(0, 6)))
    a = data.draw(hnp.arrays(np.int8, (2, 7, 1), elements=st.integers(-86, 86)))
    b = data.draw(hnp.arrays(np.int8, (2, 5, 1), elements=st.integers(-86, 86)))
    assert in_range(intmm.do_emb(e, tokens, a, b, data.draw(st.integers(0, 6))))
    assert np.array_equal(intmm.do_emb(e, tokens), e[tokens])


def test_do_emb_unperturbed_does_not_clip():
    """⚠ A stored −128 passes through the plain lookup (the reference applies no clip there)."""
    e = np.array([[-128, 5]], np.int8)
    assert intmm.do_emb(e, np.zeros((1, 1), int))[0, 0, 0] == -128


@FEW
@given(int8_arrays(9), hnp.arrays(np.int32, (3, 9), elements=st.integers(-7396, 7396)), st.integers(0, 8))
def test_standard_in_range(p, e, sigma):
    """clip(p + ⌊E / 2^(4+σ)⌋) lies in [−127, 127] as int8."""
    assert in_range(intmm.get_noisy_standard(p, e, sigma))


def test_standard_antithetic_pair_is_asymmetric():
    """⚠ ⌊+1/16⌋ = 0 but ⌊−1/16⌋ = −1: the pair (+E, −E) is not symmetric around p."""
    p = np.array([10], np.int8)
    assert list(intmm.get_noisy_standard(p, np.array([[1], [-1]], np.int32), 0)[:, 0]) == [10, 9]


# -- recurrent cell ---------------------------------------------------------------------------------
@FEW
@given(st.data())
def test_gru_in_range_and_equals_exact_blend(data):
    """For inputs in [−127, 127] the new state is s + ⌊g(c − s)/256⌋ exactly, within ±127."""
    h = 6
    sym = st.integers(-127, 127)
    x, s, bf, bh = (data.draw(hnp.arrays(np.int8, (3, h), elements=sym)) for _ in range(4))
    ws = {n: data.draw(int8_arrays((h, h))) for n in ("Wf", "Uf", "Wh", "Uh")}
    y = fp.egg_gru(x, s, lambda n, v: intmm.do_mm(ws[n], v), bf, bh)
    assert in_range(y)
    f = fp.clipped_add(intmm.do_mm(ws["Wf"], x), intmm.do_mm(ws["Uf"], s), bf).astype(int)
    g = f + 127
    gp = (g * s) // 256
    c = fp.clipped_add(intmm.do_mm(ws["Wh"], x), intmm.do_mm(ws["Uh"], gp.astype(np.int8)), bh).astype(int)
    assert np.array_equal(y, s + (g * (c - s)) // 256)


def test_gru_blend_wraps_instead_of_saturating():
    """The blend term ⌊g(c − s)/256⌋ can reach 252; the state still ends in range, no saturation."""
    h = 1
    zero = np.zeros((h, h), np.int8)
    mm = {"Wf": zero, "Uf": zero, "Wh": zero, "Uh": zero}
    s = np.array([[-127]], np.int8)
    bf = np.array([127], np.int8)         # f = 127, g = 254
    bh = np.array([127], np.int8)         # c = 127: blend = ⌊254 · 254 / 256⌋ = 252
    y = fp.egg_gru(np.zeros((1, h), np.int8), s, lambda n, v: intmm.do_mm(mm[n], v), bf, bh)
    assert y[0, 0] == -127 + 252 == 125


# -- log-likelihood ---------------------------------------------------------------------------------
@FEW
@given(hnp.arrays(np.int8, (3, 40), elements=st.integers(-127, 127)), st.data())
def test_int_ll_is_a_log_probability(logits, data):
    """ll ≤ 0 and int32; the most likely token scores at least −16·log2(V)−1 in 1/16 bits."""
    target = data.draw(hnp.arrays(np.int64, 3, elements=st.integers(0, 39)))
    ll = loglik.int_ll(logits, target)
    assert ll.dtype == np.int32 and np.all(ll <= 0)
    best = loglik.int_ll(logits, logits.argmax(-1))
    assert np.all(best >= -16 * math.log2(40) - 1)


@FEW
@given(hnp.arrays(np.int64, 64, elements=st.integers(0, (1 << 28) - 1)))
def test_log2_entries_equal_the_float_formula(index):
    """LOG2 by 464 exact thresholds == the reference's float64 formula, at random indices."""
    assert np.array_equal(loglik.log2_entry(index), loglik.log2_entry_float(index))


def test_log2_equals_float_formula_below_2_22_and_at_every_step():
    """The whole low range, and every threshold Tₖ − 1, Tₖ (each step of ⌊16 log2 s⌋)."""
    idx = np.arange(1 << 22)
    assert np.array_equal(loglik.log2_entry(idx), loglik.log2_entry_float(idx))
    t = loglik.log2_thresholds()
    steps = np.clip(np.concatenate([t - 2, t - 1]), 0, (1 << 28) - 1)   # index = s − 1
    assert np.array_equal(loglik.log2_entry(steps), loglik.log2_entry_float(steps))


def test_log2_clamps_at_the_table_end():
    """⚠ Indices ≥ 2²⁸ read the last entry, 384 (V ≥ 268 can get there)."""
    assert list(loglik.log2_entry([(1 << 28) - 1, 1 << 28, 1 << 30])) == [384, 384, 384]


def test_exp2_formula_twin_over_all_entries():
    """max{n : n¹⁶ ≤ 2^(64+j)} == ⌊16·2^(j/16)⌋ in float64, for all 256 j."""
    assert np.array_equal(loglik.exp2_table(), loglik.exp2_table_float())
    assert loglik.exp2_table()[1] == 16 and loglik.exp2_table()[255] == 1_004_119
