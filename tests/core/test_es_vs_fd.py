"""The ES gradient estimate against finite differences, at three strengths.

Notation: a Linear model y = x Wᵀ + b, one noise draw εₖ per antithetic pair (members 2k, 2k+1),
N = P members, K = P/2 pairs, and G the tree EggRoll hands to the optimizer when fitness = raw
score. Pairing the two members of each pair,

    G = −(σ/√N) Σₙ fₙ εₙ = −σ² √N · (1/K) Σₖ [(f₂ₖ − f₂ₖ₊₁)/(2σ)] εₖ,

so ĝ := −G/(σ²√N) = (1/K) Σₖ dₖ εₖ with dₖ the antithetic difference quotient.

1. Exact: for a quadratic F, dₖ = ⟨∇F, εₖ⟩ exactly, so ĝ = (1/K) Σₖ ⟨∇F, εₖ⟩ εₖ with ∇F from
   central finite differences (also exact for a quadratic).
2. Statistical: for a smooth non-quadratic F and small σ, E[ĝ] = ∇F + O(σ²); we assert
   |ĝ − ∇F| ≤ 5·SE elementwise with SE = std(dₖ εₖ)/√K from the same samples.
3. Rates: the error shrinks like 1/√N, and the low-rank estimate approaches the full-rank Gaussian
   one as the rank r grows.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npegg.es import ES
from npegg.models import MM, Linear
from npegg.noiser import EggRoll, OpenES
from npegg.tree import flatten


def _setup(a, b, rank, sigma, pop, seed, noiser=EggRoll, batch=3):
    es, state = ES.create(Linear, dict(in_dim=b, out_dim=a, dtype="float64"), pop_size=pop, sigma=sigma,
                          lr=0.0, rank=rank, seed=seed, noiser=noiser)
    rng = np.random.default_rng(seed)
    params = {"weight": rng.standard_normal((a, b)), "bias": rng.standard_normal(a)}
    x = rng.standard_normal((batch, b))
    y = rng.standard_normal((batch, a))
    return es, state.__class__(params, state.noiser_params, state.epoch), x, y


def _fd_grad(fn, params, h=1e-4):
    """Central finite differences of fn(params) for every entry of every leaf."""
    out = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            up = {k: v.copy() for k, v in params.items()}
            dn = {k: v.copy() for k, v in params.items()}
            up[name][i] += h
            dn[name][i] -= h
            g[i] = (fn(up) - fn(dn)) / (2 * h)
        out[name] = g
    return out


def _eps(es, state, k, shape_w, shape_b):
    """Materialised unit perturbation εₖ of member 2k (slow path, from the noise source)."""
    fz, keys = es.frozen_noiser_params, es.es_tree_key
    r = fz["rank"]
    a, b = fz["noise"].lowrank(keys["weight"], state.epoch, np.array([2 * k]), shape_w, r, fz["noise_reuse"])
    e = fz["noise"].full(keys["bias"], state.epoch, np.array([2 * k]), shape_b, fz["noise_reuse"])
    # float64 factors, as the library's float64 update uses them: under NumPy < 2 a float32 product
    # here would stay float32 all the way into the expected value (value-based promotion)
    a, b = a[0].astype(np.float64), b[0].astype(np.float64)
    return {"weight": a @ b.T / np.sqrt(r), "bias": e[0].astype(np.float64)}


def _ghat(es, state, raw):
    """ĝ = −G/(σ²√N) from the library's estimate, fitness = raw scores."""
    g = es.noiser.estimate_grads(es.frozen_noiser_params, state.noiser_params, state.params, es.es_tree_key, raw,
                                 (np.full(es.pop_size, state.epoch), es.members), es.es_map)
    scale = state.noiser_params["sigma"] ** 2 * np.sqrt(es.pop_size)
    return {k: -v / scale for k, v in flatten(g).items()}


@given(a=st.integers(1, 5), b=st.integers(1, 5), rank=st.integers(1, 4),
       sigma=st.floats(0.05, 2.0), pairs=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_quadratic_identity_exact(a, b, rank, sigma, pairs, seed):
    """For F(W, b) = −‖x Wᵀ + b − y‖², the estimate is exactly (1/K) Σ ⟨∇F, εₖ⟩ εₖ."""
    es, state, x, y = _setup(a, b, rank, sigma, 2 * pairs, seed)
    out = es.forward(state, np.broadcast_to(x, (es.pop_size,) + x.shape))           # (P, B, a)
    raw = -((out - y) ** 2).sum(axis=(1, 2))                                         # (P,)
    ghat = _ghat(es, state, raw)
    plain = lambda p: -((x @ p["weight"].T + p["bias"] - y) ** 2).sum()
    grad = _fd_grad(plain, state.params)
    expect = {k: np.zeros_like(v) for k, v in grad.items()}
    for k in range(pairs):
        eps = _eps(es, state, k, (a, b), (a,))
        d = sum((grad[n] * eps[n]).sum() for n in grad)                            # ⟨∇F, εₖ⟩
        for n in grad:
            expect[n] += d * eps[n] / pairs
    for n in grad:
        # float64 throughout; the FD of a quadratic is exact up to rounding (~1e-10 here)
        np.testing.assert_allclose(ghat[n], expect[n], rtol=1e-6, atol=1e-6 * (1 + np.abs(expect[n]).max()))


def _softplus_setup(pop, seed, rank=1, sigma=0.01, noiser=EggRoll):
    es, state, x, y = _setup(4, 3, rank, sigma, pop, seed, noiser=noiser, batch=5)
    f = lambda out: -np.logaddexp(0, out - y).sum(axis=(-2, -1))                    # smooth, not quadratic
    return es, state, x, f


def _pair_stats(es, state, x, f):
    """Per-pair contributions dₖ εₖ (K, …) of the estimate, rebuilt the slow way, and ĝ."""
    out = es.forward(state, np.broadcast_to(x, (es.pop_size,) + x.shape))
    raw = f(out)
    sigma = state.noiser_params["sigma"]
    contrib = {"weight": [], "bias": []}
    for k in range(es.pop_size // 2):
        eps = _eps(es, state, k, (4, 3), (4,))
        d = (raw[2 * k] - raw[2 * k + 1]) / (2 * sigma)
        for n in contrib:
            contrib[n].append(d * eps[n])
    return {n: np.array(v) for n, v in contrib.items()}, _ghat(es, state, raw)


def test_statistical_agreement_with_fd():
    """Non-quadratic F, σ = 0.01 (bias O(σ²) ≈ 1e-4 ≪ SE): |ĝ − ∇F| ≤ 5 SE elementwise."""
    es, state, x, f = _softplus_setup(pop=2048, seed=3)
    contrib, ghat = _pair_stats(es, state, x, f)
    grad = _fd_grad(lambda p: f(x @ p["weight"].T + p["bias"]), state.params, h=1e-5)
    for n in grad:
        np.testing.assert_allclose(ghat[n], contrib[n].mean(0), rtol=1e-6, atol=1e-9)   # library = slow sum
        se = contrib[n].std(0, ddof=1) / np.sqrt(contrib[n].shape[0])                   # SE of a mean of K pairs
        # 5 SE: with 16 entries the chance of a false failure is < 16 · 6e-7
        assert np.all(np.abs(ghat[n] - grad[n]) <= 5 * se), (n, ghat[n] - grad[n], se)


def test_unbiased_for_linear_objective():
    """F linear in (W, b): averaging 64 independent estimates (different epochs) gives ∇F within 5 SE."""
    es, state, x, _ = _setup(4, 3, 2, 0.5, 64, seed=7, batch=5)
    c = np.random.default_rng(1).standard_normal((5, 4))
    f = lambda out: (out * c).sum(axis=(-2, -1))
    grad = _fd_grad(lambda p: f(x @ p["weight"].T + p["bias"]), state.params)
    draws = {"weight": [], "bias": []}
    for epoch in range(64):
        s = state.__class__(state.params, state.noiser_params, epoch)
        out = es.forward(s, np.broadcast_to(x, (64,) + x.shape))
        for n, v in _ghat(es, s, f(out)).items():
            draws[n].append(v)
    for n in grad:
        d = np.array(draws[n])
        se = d.std(0, ddof=1) / np.sqrt(len(d))
        assert np.all(np.abs(d.mean(0) - grad[n]) <= 5 * se + 1e-12), n


@pytest.mark.main_pass_only
def test_error_shrinks_like_inverse_sqrt_population():
    """RMS error of ĝ over 24 seeds at N = 64 … 4096: fitted log-log slope is −½ ± 0.1.

    Each RMS is over 24 seeds × 16 entries, so its relative standard error is about 1/√(2·24·16)
    ≈ 4%; across a 64× range of N that moves the slope by at most ≈ 0.03, so ±0.1 is ≥ 3 SE.
    """
    ns = [64, 256, 1024, 4096]
    rms = []
    for n in ns:
        errs = []
        for seed in range(24):
            es, state, x, f = _softplus_setup(pop=n, seed=100 + seed)
            out = es.forward(state, np.broadcast_to(x, (n,) + x.shape))
            g = _ghat(es, state, f(out))
            true = _fd_grad(lambda p: f(x @ p["weight"].T + p["bias"]), state.params, h=1e-5)
            errs.append(np.concatenate([(g[k] - true[k]).ravel() for k in g]))
        rms.append(np.sqrt(np.mean(np.square(errs))))
    slope = np.polyfit(np.log(ns), np.log(rms), 1)[0]
    assert -0.6 <= slope <= -0.4, (slope, rms)


def _cos_bias(rank, pairs=1 << 17, noiser=EggRoll, sigma=1.0):
    """|E[ĝ] − Gaussian-smoothed gradient| for F(W) = Σ cos(W), read through do_mm with x = I.

    The Gaussian-smoothed objective is Σ cos(W) e^{−σ²/2}, so its gradient is −sin(W) e^{−σ²/2}.
    """
    a = b = 3
    es, state = ES.create(MM, dict(in_dim=b, out_dim=a, dtype="float64"), pop_size=2 * pairs, sigma=sigma, lr=0.0,
                          rank=rank, seed=11, noiser=noiser)
    w = np.random.default_rng(2).uniform(-2, 2, (a, b))
    state = state.__class__(w, state.noiser_params, 0)
    eye = np.broadcast_to(np.eye(b), (es.pop_size, b, b))
    wt = es.forward(state, eye)                                                       # (P, b, a): member's Wᵀ
    raw = np.cos(wt).sum(axis=(1, 2))
    d = (raw[0::2] - raw[1::2]) / (2 * sigma)                                          # (K,)
    eps = (wt[0::2] - wt[1::2]).transpose(0, 2, 1) / (2 * sigma)                       # (K, a, b) = εₖ
    contrib = d[:, None, None] * eps
    ghat = contrib.mean(0)
    se = contrib.std(0, ddof=1) / np.sqrt(pairs)
    target = -np.sin(w) * np.exp(-sigma ** 2 / 2)
    return np.abs(ghat - target).mean(), se.mean()


def test_low_rank_approaches_full_rank_as_rank_grows():
    """Bias of the rank-r estimate against the full-rank Gaussian one falls with r.

    For a separable F the leading term of E[ĝ] − ∇F_σ is σ² F'''(W) (E[ε⁴] − 3)/6, and for
    ε = A Bᵀ/√r, E[ε⁴] − 3 = (κ² − 3)/r with κ the table's kurtosis (2.85): an O(1/r) bias.
    """
    bias = {r: _cos_bias(r) for r in (1, 4, 16)}
    b1, se1 = bias[1]
    b4, se4 = bias[4]
    b16, se16 = bias[16]
    assert b1 > b4 + 3 * (se1 + se4) and b4 > b16 + 3 * (se4 + se16), bias
    # the O(1/r) rate: r = 1 → 16 cuts the bias by well over 4× (exactly 16× in the limit)
    assert b16 < b1 / 4, bias
