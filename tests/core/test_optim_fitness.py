"""Optimizers against their formulas, schedules, fitness shapers and their non-finite policy."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npegg import fitness as F
from npegg import optim

vec = st.lists(st.floats(-10, 10), min_size=2, max_size=12)


@given(g1=vec, lr=st.floats(0.001, 1.0), mom=st.floats(0.0, 0.95))
def test_sgd_momentum_formula(g1, lr, mom):
    g = np.array(g1)
    for nesterov in (False, True):
        opt = optim.sgd(lr, momentum=mom, nesterov=nesterov)
        p = {"w": np.zeros_like(g)}
        s = opt.init(p)
        t = np.zeros_like(g)
        for _ in range(3):
            u, s = opt.update({"w": g}, s, p)
            t = g + mom * t
            np.testing.assert_allclose(u["w"], -lr * (g + mom * t if nesterov else t), rtol=1e-12)


@given(gs=st.lists(vec.filter(lambda v: len(v) == 4), min_size=1, max_size=5), lr=st.floats(1e-4, 0.5),
       wd=st.sampled_from([0.0, 1e-2]))
def test_adam_formula_with_bias_correction(gs, lr, wd):
    """The formula in float64 around npegg's corrections cₖ = 1 − βᵏ (their float32 values are
    pinned by the next test): the same operations up to (1 − 0.9) vs 0.1, so rtol 1e-12."""
    opt = optim.adamw(lr, weight_decay=wd) if wd else optim.adam(lr)
    p = {"w": np.linspace(-1, 1, 4)}
    s = opt.init(p)
    m = v = np.zeros(4)
    for k, g in enumerate(gs, start=1):
        g = np.array(g)
        u, s = opt.update({"w": g}, s, p)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mh, vh = m / float(optim._bias_correction(0.9, k)), v / float(optim._bias_correction(0.999, k))
        np.testing.assert_allclose(u["w"], -lr * (mh / (np.sqrt(vh) + 1e-8) + wd * p["w"]), rtol=1e-12, atol=1e-15)
        assert int(s["count"]) == k


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99, 0.999, 0.9999])
def test_adam_bias_correction_is_optax_float32_one_minus_powf(beta):
    """optax's 1 − βᵏ is 1 − powf(float32(β), k) in float32. Against the correctly rounded power of
    float32(β): one float32 ulp of βᵏ or of 1 − βᵏ apart at most (powf is not always correctly
    rounded; for βᵏ ≥ ½ the subtraction is exact, below it rounds to the coarser ulp of 1 − βᵏ). Against the exact 1 − βᵏ, npegg's old formula, far apart:
    1 − float32(0.999) is 1.3e-5 relative from 1 − 0.999, hundreds of its ulps."""
    ks = np.arange(1, 5001)
    got = np.array([optim._bias_correction(beta, int(k)) for k in ks])
    assert got.dtype == np.float32
    power = (float(np.float32(beta)) ** ks.astype(np.float64)).astype(np.float32)   # correctly rounded
    want = np.float32(1) - power
    assert np.all(np.abs(got - want) <= np.maximum(np.spacing(power), np.spacing(want)))
    old = (1 - beta ** ks.astype(np.float64)).astype(np.float32)
    if beta >= 0.999:
        assert np.max(np.abs(got - old) / np.spacing(got)) > 100        # measured: 227 (0.999), 2968 (0.9999)


def test_lr_schedule_is_evaluated_per_step_from_zero():
    opt = optim.sgd(optim.linear_schedule(1.0, 0.0, 4))
    s = opt.init({"w": np.zeros(1)})
    seen = []
    for _ in range(6):
        u, s = opt.update({"w": np.ones(1)}, s)
        seen.append(-u["w"][0])
    np.testing.assert_allclose(seen, [1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_schedules():
    assert optim.constant_schedule(3.0)(100) == 3.0
    e = optim.exponential_decay(1.0, 10, 0.5)
    np.testing.assert_allclose([e(0), e(10), e(20), e(5)], [1, 0.5, 0.25, 0.5 ** 0.5])
    assert optim.exponential_decay(1.0, 10, 0.5, staircase=True)(19) == 0.5
    assert optim.exponential_decay(1.0, 10, 0.5, end_value=0.3)(100) == 0.3
    c = optim.cosine_decay_schedule(2.0, 100, alpha=0.1)
    np.testing.assert_allclose([c(0), c(50), c(100), c(200)], [2.0, 2.0 * (0.9 * 0.5 + 0.1), 0.2, 0.2])


def test_apply_updates_keeps_dtype():
    p = {"a": np.ones(3, np.float32)}
    out = optim.apply_updates(p, {"a": np.ones(3, np.float64) * 0.5})
    assert out["a"].dtype == np.float32 and np.all(out["a"] == 1.5)


@given(raw=st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=32).filter(lambda r: len(r) % 4 == 0))
def test_zscore_per_group_mean_global_variance(raw):
    r = np.array(raw)
    f = F.zscore(r, group_size=4)
    g = r.reshape(-1, 4)
    np.testing.assert_allclose(f, ((g - g.mean(1, keepdims=True)) / np.sqrt(r.var() + 1e-5)).ravel())
    np.testing.assert_allclose(f.reshape(-1, 4).sum(1), 0, atol=1e-9 * (1 + np.abs(f).max()))


def test_centered_ranks_and_ties():
    np.testing.assert_allclose(F.centered_ranks([3.0, 1.0, 2.0]), [0.5, -0.5, 0.0])
    np.testing.assert_allclose(F.centered_ranks([1.0, 1.0, 5.0, 0.0]), [0.0, 0.0, 0.5, -0.5])


def test_pair_sign():
    np.testing.assert_array_equal(F.pair_sign([2.0, 1.0, 0.0, 3.0, 1.0, 1.0]), [1, -1, -1, 1, 0, 0])


def test_nan_policy_raise_names_members():
    with pytest.raises(ValueError, match=r"non-finite.*members \[1, 2\]"):
        F.zscore([0.0, np.nan, np.inf, 1.0])


@pytest.mark.parametrize("shaper", [F.zscore, F.centered_ranks, F.pair_sign])
def test_nan_policy_worst_ranks_nonfinite_last(shaper):
    """Every non-finite score becomes the lowest finite one: never rewarded."""
    f = shaper([5.0, np.nan, 1.0, np.inf], nan_policy="worst")
    assert np.isfinite(f).all()
    if shaper is F.pair_sign:   # pairwise: a non-finite member at best ties its partner
        assert f[1] == -1 and f[3] <= 0
    else:
        assert f[1] == f.min() and f[3] == f.min()
    with pytest.raises(ValueError):
        shaper([np.nan, np.nan], nan_policy="worst")
