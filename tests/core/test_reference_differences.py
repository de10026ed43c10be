"""Every input the float reference accepts and npegg refuses or computes differently, pinned.

One test per row of docs/reference-differences.md (float section): a difference removed is
tested to give the reference's answer, a difference kept on purpose is tested to stay as
documented, so neither can change unnoticed.
"""
import numpy as np
import pytest

from npegg import fitness as F
from npegg import keys as K
from npegg import optim
from npegg.es import ES
from npegg.models import MLP
from npegg.models.common import EMB_PARAM, MM_PARAM
from npegg.noise import NoiseTable
from npegg.noiser import EggRoll

MLP_KW = dict(in_dim=2, out_dim=1, hidden_dims=[4])


def _noiser(**kw):
    return EggRoll.init_noiser({}, 0.1, 0.1, noise=NoiseTable(seed=3, log2_size=16), **kw)


# -- fitness -----------------------------------------------------------------------------------------
def test_convert_fitnesses_accepts_num_episodes_list_and_ignores_it():
    frozen, nparams = _noiser()
    raw = np.array([1.0, 3.0, -2.0, 0.5], np.float32)
    np.testing.assert_array_equal(EggRoll.convert_fitnesses(frozen, nparams, raw, num_episodes_list=[1, 2, 3, 4]),
                                  EggRoll.convert_fitnesses(frozen, nparams, raw))


def test_nonfinite_scores_raise_where_the_reference_returns_nan():
    """Kept: the reference turns one NaN into NaN fitness for everybody (and NaN params after the
    update); npegg stops before any update and names the members."""
    frozen, nparams = _noiser()
    with pytest.raises(ValueError, match=r"non-finite.*members \[2\]"):
        EggRoll.convert_fitnesses(frozen, nparams, np.array([1.0, 2.0, np.nan, 0.0]))


def test_scores_must_be_one_per_member():
    """Kept: the reference z-scores any shape (group 0); npegg needs (P,), one score per member."""
    frozen, nparams = _noiser()
    with pytest.raises(ValueError, match=r"raw_scores must be 1-D"):
        EggRoll.convert_fitnesses(frozen, nparams, np.zeros((4, 2)))


def test_integer_scores_are_normalised_in_float64():
    """Computed differently: the reference (x64 off) works in float32; npegg in float64."""
    f = F.zscore(np.array([3, 1, 4, 1, 5, 9], np.int32), group_size=2)
    assert f.dtype == np.float64
    np.testing.assert_allclose(f[:2], np.array([1.0, -1.0]) / np.sqrt(np.var([3, 1, 4, 1, 5, 9]) + 1e-5))


def test_centered_ranks_give_ties_their_mean_rank():
    """Kept: OpenAI ES / evosax rank ties by argsort order, so equal scores get unequal fitness."""
    np.testing.assert_allclose(F.centered_ranks([2.0, 2.0, 1.0, 2.0]), [1 / 6, 1 / 6, -0.5, 1 / 6])


# -- noisers -----------------------------------------------------------------------------------------
def test_one_epoch_per_population():
    """Kept: the reference vmaps (epoch, thread) pairs and would take a different epoch per member;
    npegg takes one epoch for the whole population (every ES loop passes one)."""
    frozen, nparams = _noiser()
    with pytest.raises(ValueError, match="one value for the whole population"):
        EggRoll.do_mm(frozen, nparams, np.ones((3, 2)), K.key(1), (np.array([0, 1]), np.array([0, 1])),
                      np.ones((2, 2)))


def test_negative_thread_ids_are_refused():
    frozen, nparams = _noiser()
    with pytest.raises(ValueError, match=">= 0"):
        EggRoll.do_mm(frozen, nparams, np.ones((3, 2)), K.key(1), (0, np.array([-1, 0])), np.ones((2, 2)))


@pytest.mark.parametrize("kw, match", [(dict(sigma=0.0), "sigma"), (dict(sigma=-0.1), "sigma"),
                                       (dict(rank=0), "rank"), (dict(noise_reuse=-1), "noise_reuse")])
def test_settings_the_reference_takes_unchecked_are_refused(kw, match):
    """Kept: the reference checks none of these; σ = 0 never moves, σ < 0 swaps the partners'
    signs, rank 0 divides σ by √0, a negative noise_reuse counts epochs backwards."""
    kw = dict(sigma=0.1) | kw
    with pytest.raises(ValueError, match=match):
        EggRoll.init_noiser({}, kw.pop("sigma"), 0.1, **kw)


def test_default_noise_reuse_is_one():
    """Kept: eggroll.py defaults to 0 (the same noise every epoch), the notebook to 1."""
    assert EggRoll.init_noiser({}, 0.1, 0.1)[0]["noise_reuse"] == 1


def test_embeddings_update_unless_update_emb_false():
    """Kept: the reference's update is a no-op for EMB leaves (and its do_emb raises); npegg
    perturbs and updates them; update_emb=False gives the reference's zero update."""
    params, keys, es_map = {"e": np.zeros((5, 3), np.float32)}, {"e": K.key(2)}, {"e": EMB_PARAM}
    info, f = (np.zeros(4, int), np.arange(4)), np.array([1.0, -1.0, 0.5, -0.5])
    for update_emb, moved in ((True, True), (False, False)):
        frozen, nparams = _noiser(update_emb=update_emb)
        g = EggRoll.estimate_grads(frozen, nparams, params, keys, f, info, es_map)["e"]
        assert bool(np.any(g)) is moved


def test_do_updates_leaves_the_callers_state_alone():
    """Kept: the reference writes the new optimizer state into the noiser_params it was given;
    npegg returns a new dict (functional state)."""
    frozen, nparams = EggRoll.init_noiser({"w": np.zeros((2, 3), np.float32)}, 0.1, 0.1, solver="adam",
                                          noise=NoiseTable(seed=3, log2_size=16))
    before = nparams["opt_state"]
    new, _ = EggRoll.do_updates(frozen, nparams, {"w": np.zeros((2, 3), np.float32)}, {"w": K.key(1)},
                                np.array([1.0, -1.0]), (np.zeros(2, int), np.arange(2)), {"w": MM_PARAM})
    assert nparams["opt_state"] is before and int(before["count"]) == 0 and int(new["opt_state"]["count"]) == 1


# -- optimizers and schedules (optax) --------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: optim.adam(0.1, mu_dtype=np.float32), lambda: optim.adam(0.1, nesterov=True),
                                  lambda: optim.sgd(0.1, accumulator_dtype=np.float32),
                                  lambda: optim.adamw(0.1, mask=None)])
def test_optax_options_not_implemented_raise_typeerror_naming_them(make):
    with pytest.raises(TypeError, match="mu_dtype|nesterov|accumulator_dtype|mask"):
        make()


@pytest.mark.parametrize("make, match", [(lambda: optim.sgd(0.1, momentum=1.0), "momentum"),
                                         (lambda: optim.sgd(-0.1), "learning_rate"),
                                         (lambda: optim.adam(0.1, b1=1.0), "b1")])
def test_optimizer_settings_that_diverge_are_refused(make, match):
    """Kept: optax runs momentum ≥ 1, b1 ≥ 1 and lr < 0 (ascent); in npegg they are mistakes."""
    with pytest.raises(ValueError, match=match):
        make()


def test_schedules_follow_optax_on_degenerate_settings():
    """Removed: steps ≤ 0 or rate 0 hold init_value; a negative begin counts as 0 (optax)."""
    assert [optim.linear_schedule(1.0, 0.0, 0)(k) for k in (0, 5)] == [1.0, 1.0]
    assert [optim.exponential_decay(2.0, 0, 0.5)(k) for k in (0, 5)] == [2.0, 2.0]
    assert [optim.exponential_decay(2.0, 10, 0.0)(k) for k in (0, 50)] == [2.0, 2.0]
    assert optim.linear_schedule(1.0, 0.0, 10, transition_begin=-5)(5) == 0.5
    assert optim.exponential_decay(1.0, 10, 0.5, transition_begin=-5)(10) == 0.5


def _adam_pair(lr, wd, b1, b2):
    optax = pytest.importorskip("optax", reason="optax is in the `reference` extra (not installable with "
                                                 "NumPy 1.23.2; .ci/run installs it in the main run)")
    o = optax.adamw(lr, b1, b2, weight_decay=wd) if wd else optax.adam(lr, b1, b2)
    n = optim.adamw(lr, b1, b2, weight_decay=wd) if wd else optim.adam(lr, b1, b2)
    return optax, o, n


def _random_tree(rng, scale=1.0):
    shapes = {"w": (7, 5), "b": (13,), "c": (3, 4, 2)}                 # several leaves, as a model has
    return {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("lr, wd, b1, b2", [(0.2, 0.0, 0.9, 0.999), (1.0, 0.0, 0.9, 0.999), (0.5, 1e-2, 0.9, 0.999),
                                            (0.3, 0.0, 0.8, 0.99), (0.7, 1e-4, 0.9, 0.9999)])
def test_adam_and_adamw_give_optax_bits(lr, wd, b1, b2):
    """Removed: Adam/AdamW are optax's bits, 300 steps of random gradients (magnitudes 1e-3…10),
    the two trajectories each on its own. optax runs op by op (un-jitted), which is its arithmetic
    as written; the bias correction is its float32 1 − powf(float32(β), k) (npegg.optim)."""
    optax, o, n = _adam_pair(lr, wd, b1, b2)
    rng = np.random.default_rng(int(lr * 10) + int(wd * 1e4))
    po = pn = _random_tree(rng)
    so, sn = o.init(po), n.init(pn)
    for _ in range(300):
        g = _random_tree(rng, 10.0 ** rng.uniform(-3, 1))
        uo, so = o.update(g, so, po)
        un, sn = n.update(g, sn, pn)
        po, pn = optax.apply_updates(po, uo), optim.apply_updates(pn, un)
        for k in g:
            assert np.array_equal(np.asarray(uo[k]), un[k]), k
    for k in pn:
        assert np.array_equal(np.asarray(po[k]), pn[k]), k


@pytest.mark.parametrize("lr, wd", [(0.2, 0.0), (1.0, 0.0), (0.5, 1e-2)])
def test_adam_within_four_ulps_of_lr_of_jitted_optax(lr, wd):
    """Kept (XLA's choice): under jax.jit, as the reference runs do_updates, XLA contracts
    (1 − β)·g + β·m into a fused multiply-add and regroups (m/c₁)/(√v̂ + ε) as m/(c₁·(√v̂ + ε)),
    which NumPy does not do. Per update, from optax's own state: the FMA drops one rounding of m
    and of v (≤ ½ ulp each) and the regrouping moves u by ≤ 1½ ulps; |u| ≤ lr·|m̂|/√v̂ stays near
    lr, so the bound is 4 float32 ulps of lr per update element (measured worst: 2.4e-7·lr)."""
    optax, o, n = _adam_pair(lr, wd, 0.9, 0.999)
    import jax
    update = jax.jit(o.update)
    rng = np.random.default_rng(7)
    p = _random_tree(rng)
    so = o.init(p)
    bound = 4 * np.finfo(np.float32).eps * lr
    for _ in range(200):
        g = _random_tree(rng, 10.0 ** rng.uniform(-3, 1))
        sn = {"count": np.asarray(so[0].count), "mu": {k: np.asarray(v) for k, v in so[0].mu.items()},
              "nu": {k: np.asarray(v) for k, v in so[0].nu.items()}}
        un, _ = n.update(g, sn, p)
        uo, so = update(g, so, p)
        for k in g:
            assert np.max(np.abs(np.asarray(uo[k]) - un[k])) <= bound, k


# -- the ES loop -------------------------------------------------------------------------------------
def test_sigma_schedule_is_read_at_the_next_epoch():
    """Computed differently: the notebook sets σ·(1 − e/N) *after* epoch e, so epoch e+1 uses it;
    ES.step gives epoch e+1 the schedule's value at e+1."""
    es, st = ES.create(MLP, MLP_KW, pop_size=4, sigma=lambda e: 1.0 / (1 + e), lr=0.1)
    st = es.step(st, np.arange(4.0))
    assert st.noiser_params["sigma"] == 0.5


def test_float64_params_stay_float64():
    """Kept: with JAX's x64 off the reference computes in float32; npegg keeps float64 params float64."""
    frozen, nparams = _noiser()
    w = np.ones((3, 2))
    out = EggRoll.do_mm(frozen, nparams, w, K.key(1), (0, np.arange(2)), np.ones((2, 2)))
    _, new = EggRoll.do_updates(frozen, nparams, {"w": w}, {"w": K.key(1)}, np.array([1.0, -1.0]),
                                (np.zeros(2, int), np.arange(2)), {"w": MM_PARAM})
    assert out.dtype == np.float64 and new["w"].dtype == np.float64
