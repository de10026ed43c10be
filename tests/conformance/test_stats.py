"""npegg.conformance.stats: Student's t without SciPy, the TOST equivalence test, and the verdicts it
gives on the regression problem (npegg against itself; a deliberately worse twin)."""
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from npegg.conformance import stats as S

# two-sided 95 % critical values t_{0.975}(ν) from any printed table (4 decimals)
T_TABLE = {1: 12.7062, 2: 4.3027, 5: 2.5706, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df, value", sorted(T_TABLE.items()))
def test_t_ppf_matches_the_printed_table(df, value):
    assert abs(S.t_ppf(0.975, df) - value) <= 5e-5 * 1.0001      # the table rounds to 4 decimals


def test_t_ppf_tends_to_the_normal_quantile():
    assert abs(S.t_ppf(0.975, 1e7) - 1.959963985) < 1e-6


@example(1e-8, 1)        # once rounded to exactly ½: ν/(ν + t²) was 1.0 in float64
@given(st.floats(-50, 50), st.sampled_from([1, 2]))
def test_t_cdf_closed_forms(x, df):
    """ν = 1 is Cauchy, ½ + atan(t)/π; ν = 2 is ½ + t/(2√(2 + t²))."""
    want = 0.5 + math.atan(x) / math.pi if df == 1 else 0.5 + x / (2 * math.sqrt(2 + x * x))
    assert abs(S.t_cdf(x, df) - want) < 1e-12


@given(st.floats(0.001, 0.999), st.floats(0.5, 200))
def test_t_ppf_inverts_t_cdf_and_is_odd(q, df):
    x = S.t_ppf(q, df)
    assert abs(S.t_cdf(x, df) - q) < 1e-9
    assert S.t_ppf(1 - q, df) == pytest.approx(-x, rel=1e-9, abs=1e-12)


def test_tost_equivalent_iff_the_interval_is_inside_the_margin():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = rng.normal(rng.normal(0, 0.3), 1, rng.integers(2, 12)), rng.normal(0, 1, rng.integers(2, 12))
        r = S.tost(x, y, 0.5)
        assert r.equivalent == (-0.5 < r.ci[0] and r.ci[1] < 0.5)
        assert r.ci[0] <= r.estimate <= r.ci[1]


def test_tost_ratio_scales_with_the_candidate():
    """On the log scale the estimate is the ratio of geometric means: multiplying the candidate by c
    multiplies the estimate and the interval by c."""
    rng = np.random.default_rng(1)
    x, y = np.exp(rng.normal(0, 0.1, 8)), np.exp(rng.normal(0, 0.1, 9))
    a, b = S.tost(x, y, 1.2, log=True), S.tost(1.5 * x, y, 1.2, log=True)
    assert b.estimate == pytest.approx(1.5 * a.estimate, rel=1e-12)
    assert np.allclose(b.ci, 1.5 * np.array(a.ci), rtol=1e-12)
    assert a.estimate == pytest.approx(np.exp(np.log(x).mean() - np.log(y).mean()), rel=1e-12)


def test_tost_false_equivalence_rate_is_at_most_alpha():
    """At a true difference equal to the margin, TOST declares equivalence at most α of the time.
    2000 simulated comparisons (K = 10 each): the Monte-Carlo std of the rate at α = 0.05 is
    √(0.05·0.95/2000) = 0.0049; allow 3 of them."""
    rng = np.random.default_rng(2)
    hits = sum(S.tost(rng.normal(1.0, 1, 10), rng.normal(0.0, 1, 10), 1.0).equivalent for _ in range(2000))
    assert hits / 2000 <= 0.05 + 3 * 0.0049


def test_tost_without_spread():
    assert S.tost([2.0, 2.0], [2.0, 2.0], 0.1).verdict == "equivalent"
    assert S.tost([3.0, 3.0], [2.0, 2.0], 0.1).verdict == "different"


@pytest.mark.parametrize("kwargs, match", [
    (dict(candidate=[1.0], reference=[1.0, 2.0], margin=1.0), "candidate needs at least 2"),
    (dict(candidate=[1.0, np.nan], reference=[1.0, 2.0], margin=1.0), "candidate needs at least 2 finite"),
    (dict(candidate=[1.0, 2.0], reference=[1.0, 2.0], margin=0.0), "margin must be > 0"),
    (dict(candidate=[1.0, 2.0], reference=[1.0, 2.0], margin=0.9, log=True), "margin must be a ratio > 1"),
    (dict(candidate=[1.0, -2.0], reference=[1.0, 2.0], margin=1.2, log=True), "candidate must be positive"),
    (dict(candidate=[1.0, 2.0], reference=[1.0, 2.0], margin=1.0, alpha=0.5), "alpha must be in"),
])
def test_tost_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.tost(**kwargs)


# -- the regression problem ---------------------------------------------------------------------------
# Margin: the epochs to the target may differ by a factor up to 1.2 either way. Measured spread of
# npegg's log epochs over 20 seeds: std 0.11, so with K = 10 a side the 90 % interval of the log
# ratio is about ±1.73·0.11·√(2/10) = ±0.085 (±9 %), and an implementation with a true ratio of 1
# is found equivalent when |estimate| < log 1.2 − 0.085 = 0.097, i.e. with probability ≈ 0.95.
MARGIN, K = 1.2, 10


@pytest.fixture(scope="module")
def npegg_reference():
    """npegg's epochs to the target for seeds 0..K−1: the reference sample."""
    return S.npegg_epochs(range(K))


@pytest.mark.main_pass_only
@pytest.mark.slow
def test_npegg_is_equivalent_to_itself_with_other_seeds(npegg_reference):
    r = S.tost(S.npegg_epochs(range(K, 2 * K)), npegg_reference, MARGIN, log=True, metric="epochs to MSE 300")
    assert r.equivalent, r.summary()


@pytest.mark.main_pass_only
@pytest.mark.slow
def test_halved_learning_rate_is_reported_different(npegg_reference):
    """lr/2 needs ~1.7× the epochs: the whole interval lies above the margin (not merely 'inconclusive')."""
    r = S.tost(S.npegg_epochs(range(K), lr=S.REGRESSION["lr"] / 2), npegg_reference, MARGIN, log=True,
               metric="epochs to MSE 300")
    assert r.verdict == "different" and r.ci[0] > MARGIN, r.summary()


def test_the_problem_is_fixed_by_its_seed():
    """Same seed, same initial parameters and the same curve, bit for bit; batches depend on the epoch only."""
    a, b = S.regression_curve(3, epochs=3), S.regression_curve(3, epochs=3)
    assert np.array_equal(a, b)
    assert np.array_equal(S.regression_batch(5), S.regression_batch(5))
    assert not np.array_equal(S.regression_init(0)["0/weight"], S.regression_init(1)["0/weight"])


# -- the tiny byte LM -------------------------------------------------------------------------------
# Validation bpb after 100 epochs over seeds: mean ≈ 3.79, sd ≈ 0.10 (2.6 % of the mean), so with
# 8 seeds a side the log-ratio's standard error is ≈ √2·0.026/√8 ≈ 0.013 and its 90 % interval
# ≈ ±0.023: a 5 % margin leaves room for npegg against itself, while lr/4 (measured ≈ 1.36×) lies
# far outside it.
BYTELM_K, BYTELM_MARGIN = 8, 1.05


@pytest.fixture(scope="module")
def npegg_bytelm_reference():
    return S.npegg_bpb(range(BYTELM_K))


@pytest.mark.main_pass_only
@pytest.mark.slow
def test_byte_lm_npegg_is_equivalent_to_itself_with_other_seeds(npegg_bytelm_reference):
    r = S.tost(S.npegg_bpb(range(BYTELM_K, 2 * BYTELM_K)), npegg_bytelm_reference, BYTELM_MARGIN, log=True,
               metric="validation bpb")
    assert r.equivalent, r.summary()


@pytest.mark.main_pass_only
@pytest.mark.slow
def test_byte_lm_quartered_learning_rate_is_reported_different(npegg_bytelm_reference):
    r = S.tost(S.npegg_bpb(range(BYTELM_K), lr=S.BYTELM["lr"] / 4), npegg_bytelm_reference, BYTELM_MARGIN,
               log=True, metric="validation bpb")
    assert r.verdict == "different" and r.ci[0] > BYTELM_MARGIN, r.summary()


def test_byte_lm_problem_is_fixed_and_learns():
    """Same seed, same bits; the data are the fixed Markov source's; 30 epochs already beat the
    uniform 8 bits per byte by far (the model starts at ~8: every byte equally likely)."""
    train, valid = S.bytelm_data()
    assert train.size == S.BYTELM["train_bytes"] and set(np.unique(train)) <= set(range(97, 97 + S.BYTELM["letters"]))
    assert np.array_equal(S.bytelm_window(4, train), S.bytelm_window(4, train))
    a, b = S.bytelm_bpb(1, epochs=30), S.bytelm_bpb(1, epochs=30)
    assert a == b and a < 6.0, a
