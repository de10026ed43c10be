"""Every fast path against its slow twin.

- EggRoll's do_mm / do_Tmm / do_emb / get_noisy_standard equal a dense computation with each
  member's materialised perturbed parameter W + s σ A Bᵀ/√r (OpenES: W + s σ E).
- The vectorized, chunked update equals a per-member Python loop over the same noise.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npegg import keys as K
from npegg.models.common import EMB_PARAM, EXCLUDED, MM_PARAM, PARAM
from npegg.noise import NoiseTable
from npegg.noiser import EggRoll, OpenES
from npegg.noiser import eggroll as eggroll_mod

NOISERS = [EggRoll, OpenES]


def _frozen(noiser, rank, sigma, table=None):
    return noiser.init_noiser({}, sigma, 0.1, rank=rank, noise=table or NoiseTable(seed=5, log2_size=16))


def _dense(noiser, frozen, sigma, shape, key, epoch, members):
    """(P, *shape) materialised perturbations s σ A Bᵀ/√r (EggRoll) or s σ E (OpenES), float64."""
    s = np.where(members % 2 == 0, 1.0, -1.0)
    if noiser is OpenES:
        e = frozen["noise"].full(key, epoch, members, shape, frozen["noise_reuse"]).astype(np.float64)
        return e * (s * sigma)[:, None, None]
    r = frozen["rank"]
    a, b = frozen["noise"].lowrank(key, epoch, members, shape, r, frozen["noise_reuse"])
    return np.einsum("par,pbr->pab", a, b) * (s * sigma / np.sqrt(r))[:, None, None]


shapes = st.tuples(st.integers(1, 7), st.integers(1, 7))


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@given(shape=shapes, rank=st.integers(1, 5), pop=st.integers(1, 9), batch=st.integers(1, 3),
       epoch=st.integers(0, 50), seed=st.integers(0, 1000))
def test_do_mm_and_do_Tmm_equal_materialised(noiser, shape, rank, pop, batch, epoch, seed):
    o, i = shape
    rng = np.random.default_rng(seed)
    frozen, nparams = _frozen(noiser, rank, 0.3)
    key = K.fold_in(K.key(seed), 7)
    members = rng.choice(1000, pop, replace=False)
    w = rng.standard_normal((o, i))
    x = rng.standard_normal((pop, batch, i))
    dense = w + _dense(noiser, frozen, 0.3, (o, i), key, epoch, members)                 # (P, O, I)
    fast = noiser.do_mm(frozen, nparams, w, key, (epoch, members), x)                     # (P, B, O)
    np.testing.assert_allclose(fast, np.einsum("pbi,poi->pbo", x, dense), rtol=1e-5, atol=1e-5)
    wt = w.T.copy()                                                                        # TMM layout (I, O)
    dense_t = wt + _dense(noiser, frozen, 0.3, (i, o), key, epoch, members)
    fast_t = noiser.do_Tmm(frozen, nparams, wt, key, (epoch, members), x)
    np.testing.assert_allclose(fast_t, np.einsum("pbi,pio->pbo", x, dense_t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@given(vocab=st.integers(2, 40), dim=st.integers(1, 6), rank=st.integers(1, 3), pop=st.integers(1, 6),
       seed=st.integers(0, 1000))
def test_do_emb_equals_materialised(noiser, vocab, dim, rank, pop, seed):
    rng = np.random.default_rng(seed)
    frozen, nparams = _frozen(noiser, rank, 0.5)
    key = K.fold_in(K.key(seed), 3)
    members = np.arange(pop) + 10
    table = rng.standard_normal((vocab, dim))
    tokens = rng.integers(0, vocab, (pop, 4))
    dense = table + _dense(noiser, frozen, 0.5, (vocab, dim), key, 2, members)            # (P, V, D)
    fast = noiser.do_emb(frozen, nparams, table, key, (2, members), tokens)               # (P, 4, D)
    np.testing.assert_allclose(fast, dense[np.arange(pop)[:, None], tokens], rtol=1e-6, atol=1e-6)


def test_get_noisy_standard_and_freeze():
    frozen, nparams = _frozen(EggRoll, 2, 0.7)
    key, members = K.key(9), np.arange(6)
    p = np.arange(5.0)
    e = frozen["noise"].full(key, 1, members, (5,), frozen["noise_reuse"])
    s = np.where(members % 2 == 0, 1.0, -1.0)
    out = EggRoll.get_noisy_standard(frozen, nparams, p, key, (1, members))
    # not divided by √r; s·σ·e is formed in float32 (the table's precision): |error| ≤ 1 ulp of ~5
    np.testing.assert_allclose(out, p + 0.7 * s[:, None] * e, rtol=0, atol=5e-7)
    np.testing.assert_array_equal(out[0::2] - p, -(out[1::2] - p))                        # antithetic
    frozen["freeze_nonlora"] = True
    assert EggRoll.get_noisy_standard(frozen, nparams, p, key, (1, members)) is p


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@pytest.mark.parametrize("kind", [PARAM, MM_PARAM, EMB_PARAM, EXCLUDED])
@pytest.mark.parametrize("pop", [10, 7])
def test_vectorized_update_equals_member_loop(noiser, kind, pop, monkeypatch):
    """G = −(1/√N) Σₙ fₙ · (member n's perturbation), summed one member at a time (an odd
    population too: the reference computes it, member 6 simply has no partner)."""
    rng = np.random.default_rng(kind)
    frozen, nparams = _frozen(noiser, 3, 0.2)
    shape = (6,) if kind == PARAM else (5, 4)
    members = np.arange(pop)
    params = {"p": rng.standard_normal(shape)}
    keys = {"p": K.key(4)}
    f = rng.standard_normal(pop)
    monkeypatch.setattr(eggroll_mod, "_CHUNK_BYTES", 64)  # force many small chunks
    g = noiser.estimate_grads(frozen, nparams, params, keys, f, (np.full(pop, 3), members), {"p": kind})["p"]
    expect = np.zeros(shape)
    for n in range(pop):
        one = np.array([n])
        if kind == PARAM:
            pert = frozen["noise"].full(keys["p"], 3, one, shape, 1)[0] * (0.2 * (1 if n % 2 == 0 else -1))
        elif kind == EXCLUDED:
            pert = np.zeros(shape)
        else:
            pert = _dense(noiser, frozen, 0.2, shape, keys["p"], 3, one)[0]
        expect += f[n] * pert
    expect = -expect / np.sqrt(pop)
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-6)
    if kind == EXCLUDED:
        assert not g.any()


def test_stacked_leaf_uses_one_key_per_layer():
    """A (L, a, b) leaf with keys (L, 2) is updated layer by layer with each layer's own noise."""
    frozen, nparams = _frozen(EggRoll, 1, 0.1)
    keys = K.split(K.key(1), 3)                                       # (L, 2)
    params = {"w": np.zeros((3, 4, 2))}
    f = np.arange(8.0) - 3.5
    info = (np.zeros(8, int), np.arange(8))
    g = EggRoll.estimate_grads(frozen, nparams, params, {"w": keys}, f, info, {"w": MM_PARAM})["w"]
    for layer in range(3):
        one = EggRoll.estimate_grads(frozen, nparams, {"w": np.zeros((4, 2))}, {"w": keys[layer]}, f, info,
                                     {"w": MM_PARAM})["w"]
        np.testing.assert_array_equal(g[layer], one)
    assert not np.allclose(g[0], g[1])


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
def test_rows_seen_leaves_out_exactly_the_unread_rows(noiser, monkeypatch):
    """With rows_seen, member n's term is fₙ (mₙ ⊙ perturbationₙ): summed one member at a time with
    its unread rows zeroed; an all-True mask is the reference's estimate, bit for bit."""
    rng = np.random.default_rng(3)
    frozen, nparams = _frozen(noiser, 2, 0.2)
    pop, shape = 9, (6, 4)
    members = np.arange(pop)
    params, keys, kinds = {"e": rng.standard_normal(shape)}, {"e": K.key(7)}, {"e": EMB_PARAM}
    f = rng.standard_normal(pop)
    seen = rng.random((pop, shape[0])) < 0.5
    monkeypatch.setattr(eggroll_mod, "_CHUNK_BYTES", 64)  # many small chunks: the mask must follow them
    info = (np.full(pop, 2), members)
    g = noiser.estimate_grads(frozen, nparams, params, keys, f, info, kinds, rows_seen={"e": seen})["e"]
    expect = np.zeros(shape)
    for n in range(pop):
        expect += f[n] * _dense(noiser, frozen, 0.2, shape, keys["e"], 2, members[n:n + 1])[0] * seen[n][:, None]
    np.testing.assert_allclose(g, -expect / np.sqrt(pop), rtol=1e-5, atol=1e-6)
    full = noiser.estimate_grads(frozen, nparams, params, keys, f, info, kinds)["e"]
    all_rows = noiser.estimate_grads(frozen, nparams, params, keys, f, info, kinds,
                                     rows_seen={"e": np.ones((pop, shape[0]), bool)})["e"]
    np.testing.assert_array_equal(all_rows, full)


@pytest.mark.parametrize("bad, match", [({"w": np.ones((4, 5), bool)}, "not an EMB_PARAM leaf"),
                                        ({"e": np.ones((4, 5), bool)}, r"shape \(4, 6\)"),
                                        ({"e": np.ones((4, 6))}, "bool array"),
                                        ([np.ones((4, 6), bool)], "must be a dict")])
def test_rows_seen_is_checked(bad, match):
    frozen, nparams = _frozen(EggRoll, 1, 0.1)
    params = {"e": np.zeros((6, 3)), "w": np.zeros((4, 5))}
    keys, kinds = {"e": K.key(1), "w": K.key(2)}, {"e": EMB_PARAM, "w": MM_PARAM}
    with pytest.raises((ValueError, TypeError), match=match):
        EggRoll.estimate_grads(frozen, nparams, params, keys, np.ones(4), (np.zeros(4, int), np.arange(4)), kinds,
                               rows_seen=bad)


@pytest.mark.parametrize("cache", [0, 1 << 24])
@pytest.mark.parametrize("batch", [1, 3])
def test_in_place_forward_paths_are_the_same_bits_as_their_expressions(cache, batch):
    """do_mm/do_Tmm write the rank-1 term into the fresh factor and get_noisy_standard scales and
    biases the fresh noise in place (issue 21): the same bits as x Wᵀ + (s·σ·(x B)) Aᵀ and p + s·σ·e
    computed with temporaries, with the table's cache off and on."""
    table = NoiseTable(seed=5, log2_size=16, cache_bytes=cache)
    frozen, nparams = EggRoll.init_noiser({}, 0.3, 0.1, rank=1, noise=table)
    key, members, rng = K.key(2), np.arange(12), np.random.default_rng(batch)
    w = rng.standard_normal((40, 24)).astype(np.float32)
    x = rng.standard_normal((12, batch, 24)).astype(np.float32)
    for _ in range(2):                                           # the second call reads the cache when on
        a, b = (np.array(f) for f in table.lowrank(key, 1, members, w.shape, 1, 1))
        scale = eggroll_mod.member_signs(frozen, members) * np.float32(0.3)
        shared = (x.reshape(-1, 24) @ w.T).reshape(12, batch, 40)          # one GEMM, as _shared_matmul
        want = shared + (np.matmul(x, b) * scale[:, None, None]) * a[:, None, :, 0]
        assert np.array_equal(EggRoll.do_mm(frozen, nparams, w, key, (1, members), x), want)
        wt = w.T.copy()
        a_t, b_t = (np.array(f) for f in table.lowrank(key, 1, members, wt.shape, 1, 1))   # (24, 40): A (12, 24, 1)
        want_t = (x.reshape(-1, 24) @ wt).reshape(12, batch, 40) + \
            (np.matmul(x, a_t) * scale[:, None, None]) * b_t[:, None, :, 0]
        assert np.array_equal(EggRoll.do_Tmm(frozen, nparams, wt, key, (1, members), x), want_t)
        p = rng.standard_normal(7).astype(np.float32)
        e = np.array(table.full(key, 1, members, (7,), 1))
        assert np.array_equal(EggRoll.get_noisy_standard(frozen, nparams, p, key, (1, members)),
                              p + e * scale[:, None])
