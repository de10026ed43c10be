"""AltEggRoll, EggRollBS and Sparse: fast paths against slow twins, estimators against their derived
expectations.

- Slow twins: do_mm / do_Tmm / do_emb / get_noisy_standard against each member's materialised
  perturbed parameter, and the chunked, vectorized update against a per-member loop.
- Estimators: for a quadratic fitness F(W) = ⟨C, W⟩ − ½λ‖W‖² (∇F = C − λW, which central finite
  differences give exactly), M independent replicates of the estimate G from N members each; the
  mean over replicates is compared with the derived expectation within 5 standard errors
  (σ̂/√M per entry, σ̂ the replicates' standard deviation; a false alarm has probability
  ≈ 6e-7 per entry, and the seeds are fixed). The biased AltEggRoll is also shown to be *far*
  from EggRoll's expectation, so the bias is measured, not just tolerated.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npegg import keys as K
from npegg.models.common import EMB_PARAM, MM_PARAM, PARAM
from npegg.noise import NoiseTable
from npegg.noiser import AltEggRoll, EggRoll, EggRollBS, Sparse
from npegg.noiser.alt_eggroll import first_absolute_moment
from npegg.noiser.sparse import materialise, sparse_update_params

NOISERS = [AltEggRoll, EggRollBS, Sparse]


def _init(noiser, rank=1, sigma=0.3, group=4, seed=5, **kw):
    extra = dict(group_size=group) if noiser is EggRollBS else {}
    if noiser is not Sparse:
        extra["rank"] = rank
    return noiser.init_noiser({}, sigma, 0.1, noise=NoiseTable(seed=seed, log2_size=16), **extra, **kw)


def _perturbation(noiser, frozen, sigma, shape, key, epoch, members, for_update=False):
    """(P, *shape) float64: member n's perturbation Wₙ − W, one member at a time (the slow twin);
    ``for_update``: the matrix the update sums instead (AltEggRoll: signs; Sparse: times q)."""
    out = []
    for n in members:
        info = (epoch, np.array([n]))
        s = (1.0 if n % 2 == 0 else -1.0) * (0.0 if noiser is EggRollBS and n % frozen["group_size"] < 2 else 1.0)
        if noiser is Sparse:
            v, i, l = sparse_update_params(frozen, sigma, info, shape, key)       # v already s·σ·unit
            d = np.zeros(shape)
            for vj, ij, lj in zip(v[0], i[0], l[0]):
                d[ij, lj] += vj
            out.append(d * (max(shape) / (shape[0] * shape[1]) if for_update else 1.0))
            continue
        r = frozen["rank"]
        a, b = frozen["noise"].lowrank(key, epoch, np.array([n]), shape, r, frozen["noise_reuse"])
        a, b = a[0].astype(np.float64), b[0].astype(np.float64)
        if for_update and noiser is AltEggRoll:
            a, b = np.sign(a), np.sign(b)
        out.append(s * sigma / np.sqrt(r) * a @ b.T)
    return np.stack(out)


shapes = st.tuples(st.integers(1, 7), st.integers(1, 7))


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@given(shape=shapes, rank=st.integers(1, 4), pop=st.integers(1, 9), batch=st.integers(1, 3),
       epoch=st.integers(0, 50), seed=st.integers(0, 1000))
def test_do_mm_and_do_Tmm_equal_materialised(noiser, shape, rank, pop, batch, epoch, seed):
    o, i = shape
    rng = np.random.default_rng(seed)
    frozen, nparams = _init(noiser, rank)
    key = K.fold_in(K.key(seed), 7)
    members = rng.choice(1000, pop, replace=False)
    w = rng.standard_normal((o, i))
    x = rng.standard_normal((pop, batch, i))
    dense = w + _perturbation(noiser, frozen, 0.3, (o, i), key, epoch, members)             # (P, O, I)
    fast = noiser.do_mm(frozen, nparams, w, key, (epoch, members), x)                      # (P, B, O)
    np.testing.assert_allclose(fast, np.einsum("pbi,poi->pbo", x, dense), rtol=1e-5, atol=1e-5)
    wt = w.T.copy()                                                                         # (I, O)
    dense_t = wt + _perturbation(noiser, frozen, 0.3, (i, o), key, epoch, members)
    fast_t = noiser.do_Tmm(frozen, nparams, wt, key, (epoch, members), x)
    np.testing.assert_allclose(fast_t, np.einsum("pbi,pio->pbo", x, dense_t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@given(vocab=st.integers(2, 30), dim=st.integers(1, 6), pop=st.integers(1, 6), seed=st.integers(0, 1000))
def test_do_emb_and_noisy_standard_equal_materialised(noiser, vocab, dim, pop, seed):
    rng = np.random.default_rng(seed)
    frozen, nparams = _init(noiser, 2, 0.5)
    key = K.fold_in(K.key(seed), 3)
    members = np.arange(pop) + 8
    table = rng.standard_normal((vocab, dim))
    tokens = rng.integers(0, vocab, (pop, 4))
    dense = table + _perturbation(noiser, frozen, 0.5, (vocab, dim), key, 2, members)      # (P, V, D)
    fast = noiser.do_emb(frozen, nparams, table, key, (2, members), tokens)                # (P, 4, D)
    np.testing.assert_allclose(fast, dense[np.arange(pop)[:, None], tokens], rtol=1e-6, atol=1e-6)
    bias = rng.standard_normal(dim)
    e = frozen["noise"].full(key, 2, members, (dim,), frozen["noise_reuse"]).astype(np.float64)
    s = np.where(members % 2 == 0, 1.0, -1.0)
    if noiser is EggRollBS:
        s = s * (members % frozen["group_size"] >= 2)
    np.testing.assert_allclose(noiser.get_noisy_standard(frozen, nparams, bias, key, (2, members)),
                               bias + 0.5 * s[:, None] * e, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@settings(max_examples=30)
@given(shape=shapes, rank=st.integers(1, 3), pop=st.sampled_from([4, 6, 8, 12]), seed=st.integers(0, 1000))
def test_update_equals_a_member_loop(noiser, shape, rank, pop, seed):
    """G = −(1/√N) Σₙ fₙ Dₙ, Dₙ the update's matrix of member n (its perturbation, or its signs,
    or q times it), summed one member at a time in float64; PARAM leaves likewise."""
    rng = np.random.default_rng(seed)
    frozen, nparams = _init(noiser, rank, group=pop)
    members = np.arange(pop)
    params = {"w": rng.standard_normal(shape).astype(np.float32), "e": rng.standard_normal(shape).astype(np.float32),
              "b": rng.standard_normal(shape[0]).astype(np.float32)}
    keys = {"w": K.key(1), "e": K.key(2), "b": K.key(3)}
    es_map = {"w": MM_PARAM, "e": EMB_PARAM, "b": PARAM}
    f = rng.standard_normal(pop)
    g = noiser.estimate_grads(frozen, nparams, params, keys, f, (4, members), es_map)
    for leaf in ("w", "e"):
        d = _perturbation(noiser, frozen, 0.3, shape, keys[leaf], 4, members, for_update=True)
        np.testing.assert_allclose(g[leaf], -np.tensordot(f, d, 1) / np.sqrt(pop), rtol=2e-5, atol=2e-6)
    e = frozen["noise"].full(keys["b"], 4, members, (shape[0],), frozen["noise_reuse"]).astype(np.float64)
    s = np.where(members % 2 == 0, 1.0, -1.0) * (members % pop >= 2 if noiser is EggRollBS else 1.0)
    np.testing.assert_allclose(g["b"], -np.tensordot(f * s * 0.3, e, 1) / np.sqrt(pop), rtol=2e-5, atol=2e-6)


# -- the estimators' expectations -----------------------------------------------------------------
SHAPE, SIGMA, LAM = (3, 4), 0.05, 0.7
C = np.linspace(-1.0, 1.0, 12).reshape(SHAPE)
W0 = np.cos(np.arange(12.0)).reshape(SHAPE) * 0.5


def _fitness(w):
    """F(W) = ⟨C, W⟩ − ½λ‖W‖² over the last two axes."""
    return np.sum(C * w, axis=(-2, -1)) - 0.5 * LAM * np.sum(w * w, axis=(-2, -1))


def _central_fd_gradient():
    """∇F at W0 by central differences (exact for a quadratic, up to float64 rounding)."""
    h, grad = 1e-3, np.zeros(SHAPE)
    for idx in np.ndindex(SHAPE):
        e = np.zeros(SHAPE)
        e[idx] = h
        grad[idx] = (_fitness(W0 + e) - _fitness(W0 - e)) / (2 * h)
    return grad


def _replicates(noiser, n, m, raw=True, **kw):
    """M estimates G (M, 3, 4), each from its own N members; fitness from the noiser's own forward
    (x = I gives Wₙᵀ), raw F(Wₙ) or (EggRollBS) F(Wₙ) − F(W) when ``raw``."""
    frozen, nparams = _init(noiser, sigma=SIGMA, group=n, seed=11, **kw)
    key = K.key(4)
    out = []
    for rep in range(m):
        members = np.arange(rep * n, (rep + 1) * n)
        eye = np.broadcast_to(np.eye(SHAPE[1]), (n,) + (SHAPE[1],) * 2)
        wn = noiser.do_mm(frozen, nparams, W0, key, (0, members), eye).transpose(0, 2, 1)   # (N, 3, 4)
        f = _fitness(wn)
        if noiser is EggRollBS:
            f = f - _fitness(W0)
        out.append(noiser.estimate_grads(frozen, nparams, {"w": W0}, {"w": key}, f, (0, members), {"w": MM_PARAM})["w"])
    return np.stack(out)


def _assert_mean(reps, expected, k=5.0):
    mean = reps.mean(axis=0)
    se = reps.std(axis=0, ddof=1) / np.sqrt(len(reps))             # standard error of the mean, per entry
    assert np.all(np.abs(mean - expected) <= k * se), (np.abs(mean - expected) / se).max()
    return mean, se


def test_central_differences_give_the_analytic_gradient():
    np.testing.assert_allclose(_central_fd_gradient(), C - LAM * W0, rtol=1e-9, atol=1e-9)


def test_eggroll_estimate_is_unbiased_the_baseline_for_the_others():
    """EggRoll, the yardstick: E[G] = −√N σ² ∇F."""
    n = 16
    _assert_mean(_replicates(EggRoll, n, 300), -np.sqrt(n) * SIGMA ** 2 * _central_fd_gradient())


@pytest.mark.parametrize("rank", [1, 3])
def test_alt_eggroll_is_biased_by_mu1_squared(rank):
    """E[G_alt] = μ₁² · (−√N σ² ∇F), μ₁ = E|t| of the table (derived in npegg/noiser/alt_eggroll.py);
    and EggRoll's unbiased expectation is rejected at the same 5 standard errors (the missing
    1 − μ₁² ≈ 36 % is measured, not absorbed: expected separation ≈ 11 standard errors at M = 600)."""
    n, mu1 = 16, first_absolute_moment()
    assert abs(mu1 - np.sqrt(2 / np.pi)) < 0.01                   # close to the Gaussian's √(2/π), not equal
    reps = _replicates(AltEggRoll, n, 600, rank=rank)
    grad = _central_fd_gradient()
    mean, se = _assert_mean(reps, mu1 ** 2 * -np.sqrt(n) * SIGMA ** 2 * grad)
    unbiased = -np.sqrt(n) * SIGMA ** 2 * grad
    assert np.max(np.abs(mean - unbiased) / se) > 5                # rejected at the bar it is accepted at


def test_alt_eggroll_bias_with_gaussian_noise_is_two_over_pi():
    """The same with Gaussian factors injected (as the reference's jax.random.normal): μ₁² = 2/π."""
    n, m = 16, 300
    rng = np.random.default_rng(3)

    class Gaussian:
        def lowrank(self, key, epoch, members, shape, rank, noise_reuse):
            pairs = np.asarray(members) >> 1
            z = np.stack([np.random.default_rng([int(q), 99]).standard_normal((shape[0] + shape[1], rank))
                          for q in pairs]).astype(np.float32)
            return z[:, shape[1]:], z[:, :shape[1]]
    frozen, nparams = AltEggRoll.init_noiser({}, SIGMA, 0.1, noise=Gaussian())
    reps = []
    for rep in range(m):
        members = np.arange(rep * n, (rep + 1) * n)
        eye = np.broadcast_to(np.eye(SHAPE[1]), (n,) + (SHAPE[1],) * 2)
        wn = AltEggRoll.do_mm(frozen, nparams, W0, K.key(4), (0, members), eye).transpose(0, 2, 1)
        reps.append(AltEggRoll.estimate_grads(frozen, nparams, {"w": W0}, {"w": K.key(4)}, _fitness(wn),
                                              (0, members), {"w": MM_PARAM})["w"])
    del rng
    _assert_mean(np.stack(reps), 2 / np.pi * -np.sqrt(n) * SIGMA ** 2 * _central_fd_gradient())


def test_sparse_estimate_is_q_squared_times_the_gradient():
    """E[G_sparse] = −√N σ² q² ∇F, q = k/(a·b) = 4/12 (derived in npegg/noiser/sparse.py)."""
    n, q = 16, max(SHAPE) / (SHAPE[0] * SHAPE[1])
    _assert_mean(_replicates(Sparse, n, 400), -np.sqrt(n) * SIGMA ** 2 * q ** 2 * _central_fd_gradient())


def test_baseline_subtraction_estimate_is_n_minus_two_over_root_n():
    """Unshaped fitness F(Wₙ) − F(W): E[G] = −(N − 2)/√N σ² ∇F (members 0, 1 add nothing)."""
    n = 8
    _assert_mean(_replicates(EggRollBS, n, 400), -(n - 2) / np.sqrt(n) * SIGMA ** 2 * _central_fd_gradient())


# -- EggRollBS specifics ---------------------------------------------------------------------------
def test_baseline_members_are_the_unperturbed_model_bit_for_bit():
    frozen, nparams = _init(EggRollBS, rank=2, group=6)
    w, x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32), np.ones((12, 3, 4), np.float32)
    out = EggRollBS.do_mm(frozen, nparams, w, K.key(2), (0, np.arange(12)), x)
    plain = x @ w.T
    for n in range(12):
        assert np.array_equal(out[n], plain[n]) == (n % 6 < 2), n


def test_baseline_fitness_formula_one_member_at_a_time():
    """f_g = mean_q [(S_qg − S_q0)/(std_q + 1e-8)] with f_0 = f_1 = 0, from (Q, G) and from (Q·G,)."""
    frozen, nparams = _init(EggRollBS, group=5)
    s = np.random.default_rng(1).standard_normal((3, 5)) * 4 + 2
    want = []
    for g in range(5):
        z = []
        for q in range(3):
            row = s[q]
            std = np.sqrt(np.mean((row - row.mean()) ** 2))
            z.append(0.0 if g < 2 else (row[g] - row[0]) / (std + 1e-8))
        want.append(sum(z) / 3)
    np.testing.assert_allclose(EggRollBS.convert_fitnesses(frozen, nparams, s), want, rtol=1e-12)
    np.testing.assert_allclose(EggRollBS.convert_fitnesses(frozen, nparams, s.ravel()), want, rtol=1e-12)


@pytest.mark.parametrize("kw, match", [(dict(group_size=0), "group_size"), (dict(group_size=2), "group_size"),
                                       (dict(group_size=4, trust_region_norm=0.0), "max_norm"),
                                       (dict(group_size=4, fitness="centered_ranks"), "fitness")])
def test_baseline_settings_without_meaning_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        EggRollBS.init_noiser({}, 0.1, 0.1, **kw)


def test_baseline_update_is_clipped_to_the_trust_region():
    """chain(clip_by_global_norm(τ), sgd(lr)): the step's global norm is lr·min(‖G‖, τ)."""
    params = {"w": np.zeros((6, 5), np.float32)}
    for tau in (1e-3, 1e3):
        frozen, nparams = EggRollBS.init_noiser(params, 0.3, 0.5, group_size=8, trust_region_norm=tau,
                                                noise=NoiseTable(seed=2, log2_size=16))
        f = EggRollBS.convert_fitnesses(frozen, nparams, np.arange(8.0) ** 2)
        args = (frozen, nparams, params, {"w": K.key(1)}, f, (0, np.arange(8)), {"w": MM_PARAM})
        g = np.linalg.norm(EggRollBS.estimate_grads(*args)["w"])
        _, new = EggRollBS.do_updates(*args)
        np.testing.assert_allclose(np.linalg.norm(new["w"]), 0.5 * min(g, tau), rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(rank=2), dict(q_multiplier=3)])
def test_sparse_settings_the_reference_ignores_are_refused(kw):
    with pytest.raises(ValueError, match="rank|q_multiplier"):
        Sparse.init_noiser({}, 0.1, 0.1, **kw)


def test_sparse_positions_are_uniform_and_a_function_of_member_pairs():
    """Partners 2q, 2q+1 share positions; over many members every entry is hit about equally
    (chi-square over a·b cells with a·b − 1 degrees of freedom: 5σ = 5·√(2·dof) above its mean)."""
    frozen, _ = _init(Sparse)
    members = np.arange(4000)
    v, i, l = sparse_update_params(frozen, 1.0, (3, members), (6, 9), K.key(8))
    assert np.array_equal(i[0::2], i[1::2]) and np.array_equal(l[0::2], l[1::2])
    assert np.array_equal(v[0::2], -v[1::2])
    counts = np.bincount((i[0::2] * 9 + l[0::2]).ravel(), minlength=54)
    expected = counts.sum() / 54
    chi2, dof = np.sum((counts - expected) ** 2 / expected), 53
    assert chi2 < dof + 5 * np.sqrt(2 * dof)
    dense = materialise(v[:2], i[:2], l[:2], (6, 9))
    assert np.count_nonzero(dense[0]) <= 9


@pytest.mark.parametrize("noiser, kw", [(AltEggRoll, {}), (Sparse, {}), (EggRollBS, dict(group_size=8))],
                         ids=["AltEggRoll", "Sparse", "EggRollBS"])
def test_es_loop_trains_with_each_noiser(noiser, kw):
    """ES.create(…, noiser=…) runs the loop; 100 SGD steps on a quadratic reduce the loss (each estimate
    points up the fitness in expectation: derived in the modules; AltEggRoll's is shrunk, not turned)."""
    from npegg.es import ES
    from npegg.models import MLP
    es, st = ES.create(MLP, dict(in_dim=3, out_dim=2, hidden_dims=[]), pop_size=8, sigma=0.05, lr=0.5,
                       noiser=noiser, noise=NoiseTable(seed=1, log2_size=16), **kw)
    x = np.broadcast_to(np.eye(3, dtype=np.float32), (8, 3, 3))
    target = np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]], np.float32)

    def loss(out):
        return ((out - target) ** 2).sum(axis=(-2, -1))
    before = float(loss(es.forward(st, x)[:1])[0])
    for _ in range(100):
        st = es.step(st, -loss(es.forward(st, x)))
    assert float(loss(es.forward(st, x)[:1])[0]) < 0.8 * before


@pytest.mark.parametrize("noiser", [Sparse, EggRollBS], ids=lambda n: n.__name__)
def test_es_create_passes_eggroll_settings_on_and_refuses_a_misspelling(noiser):
    from npegg.es import ES
    from npegg.models import MLP
    kw = dict(group_size=4) if noiser is EggRollBS else {}
    es, _ = ES.create(MLP, dict(in_dim=2, out_dim=1, hidden_dims=[]), pop_size=4, sigma=0.1, lr=0.1, noiser=noiser,
                      noise_reuse=3, **kw)
    assert es.frozen_noiser_params["noise_reuse"] == 3
    with pytest.raises(TypeError, match="noise_reuze"):
        ES.create(MLP, dict(in_dim=2, out_dim=1, hidden_dims=[]), pop_size=4, sigma=0.1, lr=0.1, noiser=noiser,
                  noise_reuze=3, **kw)
