"""The float byte LMs: every fast path against its slow twin, the state rules, the validation lanes."""
import numpy as np
import pytest

from npegg import keys as K
from npegg.program.evaluate import lanes_bpb, plan_lanes, sample_bytes
from npegg.models.common import EMB_PARAM, MM_PARAM, PARAM, CommonParams, layer_slice, simple_es_tree_key
from npegg.models.lm import ByteLM, EggCell, log_softmax_at
from npegg.models.mingru import MinGRUCell, linear_scan, linear_scan_loop
from npegg.noiser import EggRoll
from npegg.noise import NoiseTable
from npegg.noiser.eggroll import get_nonlora_update_params, unit_lora
from npegg.tree import flatten, unflatten

EPS32 = np.finfo(np.float32).eps
NOISE = NoiseTable(seed=0, log2_size=16)      # small table: builds in a millisecond, enough for tiny models


def _scan_inputs(rng, P, T, D, dtype, reset_every=0):
    a = rng.uniform(0, 1, (P, T, D)).astype(dtype)
    b = rng.normal(0, 1, (P, T, D)).astype(dtype)
    if reset_every:
        a[:, ::reset_every] = 0
    return a, b, rng.normal(0, 1, (P, D)).astype(dtype)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 129])
def test_linear_scan_equals_loop_float64(T):
    """Hillis–Steele doubling gives the step-by-step states (float64: only rounding differs)."""
    a, b, h0 = _scan_inputs(np.random.default_rng(T), 3, T, 5, np.float64, reset_every=5)
    np.testing.assert_allclose(linear_scan(a, b, h0), linear_scan_loop(a, b, h0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(linear_scan(a, b), linear_scan_loop(a, b), rtol=1e-12, atol=1e-12)


def test_linear_scan_equals_loop_float32_within_rounding_bound():
    """float32: |h| ≤ M = max(|h₀|, max|b|)·T and each path rounds O(T) times, so |Δ| ≤ 4·T·ε·M."""
    T = 128
    a, b, h0 = _scan_inputs(np.random.default_rng(1), 4, T, 16, np.float32, reset_every=50)
    fast, slow = linear_scan(a, b, h0), linear_scan_loop(a, b, h0)
    exact = linear_scan_loop(a.astype(np.float64), b.astype(np.float64), h0.astype(np.float64))
    m = max(np.abs(h0).max(), np.abs(b).max()) * T
    bound = 4 * T * EPS32 * m     # worst case (a ≈ 1 keeps every rounding); typical errors are ~100× smaller
    assert fast.dtype == np.float32
    assert np.abs(fast - exact).max() <= bound and np.abs(slow - exact).max() <= bound
    np.testing.assert_allclose(fast, slow, rtol=0, atol=bound)


def test_linear_scan_reset_forgets_the_past():
    """a_t = 0 (a document start) makes h_t independent of everything before t."""
    a, b, h0 = _scan_inputs(np.random.default_rng(2), 2, 10, 3, np.float64)
    a[:, 4] = 0
    h1 = linear_scan(a, b, h0)
    b2 = b.copy()
    b2[:, :4] += 100.0
    np.testing.assert_array_equal(linear_scan(a, b2, -h0)[:, 4:], h1[:, 4:])


# -- the LM ---------------------------------------------------------------------------------------
def _lm(cell, D=8, L=2, P=6, dtype="float64", sigma=0.2, rank=2, mlp_ratio=4, direct=False):
    frozen, params, scan_map, es_map = ByteLM.rand_init(K.key(3), D, L, cell=cell, mlp_ratio=mlp_ratio,
                                                        direct_path=direct, dtype=dtype)
    if direct:                                      # away from its zero start, so the test sees it
        params["direct"] = np.random.default_rng(9).standard_normal(params["direct"].shape)
    keys = simple_es_tree_key(params, K.key(4), scan_map)
    fnp, nnp = EggRoll.init_noiser(params, sigma, 0.1, rank=rank, noise=NOISE)
    return frozen, params, es_map, keys, fnp, nnp


def _tokens(rng, P, T):
    tok = rng.integers(1, 256, (P, T)).astype(np.uint8)
    tok[0, 3] = 0                       # a document start mid-chunk for member 0
    tok[2, 0] = 0
    return tok


def _materialise(params, es_map, keys, fnp, sigma, epoch, member):
    """Member ``member``'s perturbed params, written out in full (the slow twin of EggRoll's do_* calls)."""
    out = {}
    info = (epoch, np.array([member]))
    kinds, ks = flatten(es_map), flatten(keys)

    def one(p, kind, k):
        if kind in (MM_PARAM, EMB_PARAM):
            a, b, scale = unit_lora(fnp, sigma, info, p.shape, k)
            return p + scale[0] * (a[0].astype(p.dtype) @ b[0].T.astype(p.dtype))
        assert kind == PARAM
        return p + get_nonlora_update_params(fnp, sigma, info, p.shape, k)[0]

    for path, p in flatten(params).items():
        k = ks[path]
        out[path] = np.stack([one(p[l], kinds[path], k[l]) for l in range(k.shape[0])]) if k.ndim == 2 \
            else one(p, kinds[path], k)
    return unflatten(out)


@pytest.mark.parametrize("mlp_ratio, direct", [(4, False), (1, True), (0, True)])
@pytest.mark.parametrize("cell", ["egg", "mingru"])
def test_population_forward_equals_materialised_members(cell, mlp_ratio, direct):
    """Row m of the perturbed population = the plain model with member m's weights written out."""
    frozen, params, es_map, keys, fnp, nnp = _lm(cell, mlp_ratio=mlp_ratio, direct=direct)
    rng = np.random.default_rng(5)
    P, T, epoch = 6, 7, 3
    tok = _tokens(rng, P, T)
    state = rng.normal(0, 0.5, (P, 2, 8))
    members = np.array([0, 1, 2, 3, 10, 11])
    logits, new_state = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, (epoch, members), tok, state)
    assert logits.shape == (P, T, 256) and new_state.shape == (P, 2, 8)
    for p, m in enumerate(members):
        pm = _materialise(params, es_map, keys, fnp, nnp["sigma"], epoch, m)
        lo, st = ByteLM.forward(EggRoll, fnp, nnp, frozen, pm, keys, None, tok[p:p + 1], state[p:p + 1])
        # float64 model, but EggRoll forms the embedding's low-rank rows in the noise table's
        # float32 (σ·A[t]·Bᵀ): ~1e-7 relative there; a wrong perturbation would differ by O(σ) = 0.2
        np.testing.assert_allclose(logits[p], lo[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(new_state[p], st[0], rtol=1e-6, atol=1e-6)


def test_mlp_ratio_changes_only_the_mlp_leaves():
    """mlp_ratio m: each layer's MLP is D → mD → D, none (no ln2, no mlp leaves) for m = 0; every
    other leaf is the same array for every m, and a bad ratio is refused by name."""
    inits = {m: ByteLM.rand_init(K.key(3), 8, 2, cell="mingru", mlp_ratio=m) for m in (0, 1, 4)}
    leaves = {m: flatten(i.params) for m, i in inits.items()}
    assert leaves[1]["blocks/mlp/0/weight"].shape == (2, 8, 8)
    assert leaves[4]["blocks/mlp/0/weight"].shape == (2, 32, 8)
    assert not any(p.startswith(("blocks/mlp", "blocks/ln2")) for p in leaves[0])
    for path, leaf in leaves[0].items():
        np.testing.assert_array_equal(leaf, leaves[4][path])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="mlp_ratio"):
            ByteLM.rand_init(K.key(3), 8, 2, mlp_ratio=bad)


def test_direct_path_starts_at_zero_and_adds_its_row_to_the_logits():
    """direct_path: a (V, V) EMB_PARAM leaf ``direct``, all zeros at init (the model then predicts
    exactly as without it); a row set to r adds r to the logits after every input of that byte."""
    init = ByteLM.rand_init(K.key(3), 8, 2, cell="mingru", direct_path=True)
    assert init.params["direct"].shape == (256, 256) and not init.params["direct"].any()
    assert init.es_map["direct"] == EMB_PARAM and init.frozen_params["direct_path"] is True
    rng = np.random.default_rng(4)
    tok, state = _tokens(rng, 3, 6), np.zeros((3, 2, 8), np.float32)
    keys = simple_es_tree_key(init.params, K.key(4), init.scan_map)
    fnp, nnp = EggRoll.init_noiser(init.params, 0.1, 0.1, noise=NOISE)
    base, _ = ByteLM.forward(EggRoll, fnp, nnp, init.frozen_params, init.params, keys, None, tok, state)
    params = {**init.params, "direct": init.params["direct"].copy()}
    params["direct"][tok[1, 2]] = np.arange(256)
    moved, _ = ByteLM.forward(EggRoll, fnp, nnp, init.frozen_params, params, keys, None, tok, state)
    hit = tok == tok[1, 2]
    np.testing.assert_allclose(moved[hit] - base[hit], np.broadcast_to(np.arange(256.0), (hit.sum(), 256)), atol=1e-4)
    np.testing.assert_array_equal(moved[~hit], base[~hit])


@pytest.mark.parametrize("cell", ["egg", "mingru"])
def test_chunks_carry_state_exactly(cell):
    """One chunk of T steps = T chunks of one step with the returned state passed on."""
    frozen, params, es_map, keys, fnp, nnp = _lm(cell)
    rng = np.random.default_rng(6)
    tok = _tokens(rng, 6, 9)
    state = rng.normal(0, 0.5, (6, 2, 8))
    info = (1, np.arange(6))
    whole, s_whole = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, info, tok, state)
    s, parts = state, []
    for t in range(tok.shape[1]):
        lo, s = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, info, tok[:, t:t + 1], s)
        parts.append(lo)
    # float64 model; only the embedding's float32 low-rank rows round differently per chunk shape
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s, s_whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [EggCell, MinGRUCell])
def test_cell_forward_equals_its_step_twin(cls):
    """The cell over a chunk (batched input projections; minGRU: the scan) = its one-step twin in a loop."""
    frozen, params, es_map, keys, fnp, nnp = _lm("egg" if cls is EggCell else "mingru", L=1)
    cp = CommonParams(EggRoll, fnp, nnp, None, params["blocks"], keys["blocks"], (0, np.arange(4)))
    cp = layer_slice(cp, 0)
    cp = cp._replace(params=cp.params["att"], es_tree_key=cp.es_tree_key["att"])
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (4, 11, 8))
    s0 = rng.normal(0, 1, (4, 8))
    keep = np.ones((4, 11))
    keep[1, 5] = keep[3, 0] = 0
    y, s_T = cls._forward(cp, x, s0, keep)
    s = s0
    for t in range(11):
        s = cls.step(cp, x[:, t], s, keep[:, t])
        np.testing.assert_allclose(y[:, t], s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s_T, s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["egg", "mingru"])
def test_byte_zero_resets_the_whole_state(cell):
    """From a step whose input byte is 0 on, the output does not depend on the state carried in."""
    frozen, params, es_map, keys, fnp, nnp = _lm(cell)
    tok = _tokens(np.random.default_rng(8), 6, 5)
    tok[:, 2] = 0
    a, _ = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, None, tok, np.zeros((6, 2, 8)))
    b, _ = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, None, tok, np.full((6, 2, 8), 3.0))
    np.testing.assert_array_equal(a[:, 2:], b[:, 2:])
    assert not np.allclose(a[:, :2], b[:, :2])


def test_float32_stays_float32():
    frozen, params, es_map, keys, fnp, nnp = _lm("egg", dtype="float32")
    tok = _tokens(np.random.default_rng(9), 6, 4)
    ll, s = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, (0, np.arange(6)), tok,
                           ByteLM.init_state(frozen, 6), targets=tok)
    assert ll.dtype == np.float32 and s.dtype == np.float32 and ll.shape == (6, 4)


@pytest.mark.parametrize("direct", [False, True])
def test_fused_log_likelihood_equals_log_softmax_of_logits(direct):
    frozen, params, es_map, keys, fnp, nnp = _lm("mingru", P=6, direct=direct)
    rng = np.random.default_rng(10)
    tok, tgt = _tokens(rng, 6, 5), rng.integers(0, 256, (6, 5)).astype(np.uint8)
    info, state = (2, np.arange(6)), np.zeros((6, 2, 8))
    logits, _ = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, info, tok, state)
    ll, _ = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, info, tok, state, targets=tgt)
    naive = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(ll, np.take_along_axis(naive, tgt[..., None].astype(int), -1)[..., 0], rtol=1e-10)


@pytest.mark.parametrize("direct", [False, True])
def test_member_chunks_change_nothing(monkeypatch, direct):
    """Running the model on chunks of members (each with its own iterinfo) = all members at once."""
    import npegg.models.lm as lm
    for cell in ("egg", "mingru"):
        frozen, params, es_map, keys, fnp, nnp = _lm(cell, direct=direct)
        rng = np.random.default_rng(13)
        tok, tgt = _tokens(rng, 6, 5), rng.integers(0, 256, (6, 5)).astype(np.uint8)
        args = (EggRoll, fnp, nnp, frozen, params, keys, (4, np.arange(6) + 7), tok, rng.normal(0, 1, (6, 2, 8)))
        whole = ByteLM.forward(*args, targets=tgt)
        monkeypatch.setattr(lm, "_CHUNK_BYTES", 1)             # one member per chunk
        chunked = ByteLM.forward(*args, targets=tgt)
        monkeypatch.undo()
        for a, b in zip(whole, chunked):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)   # float32 embedding rows, as above


def test_log_softmax_at_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4]], np.float32)
    np.testing.assert_allclose(log_softmax_at(z.copy(), np.array([0])), [0.0], atol=1e-6)
    assert np.isfinite(log_softmax_at(z.copy(), np.array([2]))).all()


# -- validation lanes -----------------------------------------------------------------------------
def _stream(rng, n_docs, max_len):
    docs = [rng.integers(1, 256, rng.integers(1, max_len)).astype(np.uint8) for _ in range(n_docs)]
    return np.concatenate([np.concatenate([[0], d]) for d in docs]).astype(np.uint8)


def _plain_step(cell="egg"):
    frozen, params, es_map, keys, fnp, nnp = _lm(cell)
    step = lambda x, s, r, y: ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, None, x, s, r, y)  # noqa: E731
    return step, lambda k: np.zeros((k, 2, 8))


def test_lanes_without_cuts_are_exact():
    """Lanes that start only at document starts give the one-sequence bpb (state resets there anyway)."""
    stream = _stream(np.random.default_rng(11), 20, 40)
    step, zero = _plain_step()
    one = plan_lanes(stream, 1, context=7)
    many = plan_lanes(stream, 4, warmup=10_000, context=7)   # warm-up back to each document start: exact
    assert one.n_scored == many.n_scored == len(stream) and one.n_cut == 0
    np.testing.assert_allclose(lanes_bpb(step, many, zero(4)), lanes_bpb(step, one, zero(1)), rtol=1e-9)


def test_lanes_cuts_are_counted_and_only_approximate():
    stream = _stream(np.random.default_rng(12), 3, 300)
    step, zero = _plain_step("mingru")
    lanes = plan_lanes(stream, 8, warmup=16)
    assert lanes.n_cut > 0 and lanes.n_scored == len(stream) - 1 and "warmed up" in lanes.describe()
    exact = lanes_bpb(step, plan_lanes(stream, 1), zero(1))
    assert abs(lanes_bpb(step, lanes, zero(8), time_chunk=7) - exact) < 0.05 * exact


def test_sample_is_a_function_of_the_seed():
    frozen, params, es_map, keys, fnp, nnp = _lm("egg", dtype="float32")

    def logits_fn(tok, s):
        s = ByteLM.init_state(frozen, 1) if s is None else s
        return ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, None, tok, s)
    a = sample_bytes(logits_fn, b"ab", 20, 1.0, seed=1)
    assert len(a) == 20 and a == sample_bytes(logits_fn, b"ab", 20, 1.0, seed=1)
    assert sample_bytes(logits_fn, b"ab", 20, 0.0) == sample_bytes(logits_fn, b"ab", 20, 0.0, seed=9)


@pytest.mark.parametrize("cell", ["egg", "mingru"])
def test_rows_seen_are_the_only_embedding_rows_a_member_reads(cell):
    """ByteLM.rows_seen marks the input bytes of each member, for emb and direct; changing any other
    row of either leaf leaves every member's log-likelihoods and state exactly as they were (which
    is why the update may leave those rows' noise out)."""
    frozen, params, es_map, keys, fnp, nnp = _lm(cell, direct=True, dtype="float32")
    rng = np.random.default_rng(21)
    tok, tgt = _tokens(rng, 6, 9), rng.integers(0, 256, (6, 9)).astype(np.uint8)
    seen = ByteLM.rows_seen(params, tok)
    assert set(seen) == {"emb", "direct"} and seen["emb"].shape == (6, 256)
    for p in range(6):
        np.testing.assert_array_equal(np.flatnonzero(seen["emb"][p]), np.unique(tok[p]))
    state = rng.normal(0, 1, (6, 2, 8)).astype(np.float32)
    for p in range(6):                  # member p alone (its own noise), before and after the change
        one = ((3, np.array([p])), tok[p:p + 1], state[p:p + 1])
        base = ByteLM.forward(EggRoll, fnp, nnp, frozen, params, keys, *one, targets=tgt[p:p + 1])
        unread = np.flatnonzero(~seen["emb"][p])
        changed = {**params, "emb": params["emb"].copy(), "direct": params["direct"].copy()}
        changed["emb"][unread] += np.arange(8.0)                       # not a uniform shift: LN would remove that
        changed["direct"][unread] -= np.arange(256.0)
        out = ByteLM.forward(EggRoll, fnp, nnp, frozen, changed, keys, *one, targets=tgt[p:p + 1])
        np.testing.assert_array_equal(out[0], base[0])
        np.testing.assert_array_equal(out[1], base[1])
        changed["emb"][tok[p, 4]] += np.arange(8.0)                       # a row it reads: a real difference
        moved = ByteLM.forward(EggRoll, fnp, nnp, frozen, changed, keys, *one, targets=tgt[p:p + 1])[0]
        assert np.abs(moved - base[0]).max() > 1e-3


# -- the folded head ------------------------------------------------------------------------------
def _head_case(rank, direct, noiser=EggRoll, P=6, T=7, D=16, **settings):
    init = ByteLM.rand_init(K.key(11), D, 1, cell="mingru", direct_path=direct)
    params = dict(init.params)
    rng = np.random.default_rng(rank)
    if direct:                                               # starts at 0: give it entries to add
        params["direct"] = rng.normal(0, 1, params["direct"].shape).astype(np.float32)
    keys = simple_es_tree_key(params, K.key(5), init.scan_map)
    fnp, nnp = noiser.init_noiser(params, 0.05, 0.1, rank=rank, noise=NOISE, **settings)
    cp = CommonParams(noiser, fnp, nnp, init.frozen_params, params, keys, (3, np.arange(P) + 4))
    h = rng.normal(0, 1, (P, T, D)).astype(np.float32)
    tok = rng.integers(0, 256, (P, T)).astype(np.uint8)
    return cp, h, tok


def _unfolded_head(cp, h, tok):
    from npegg.models.common import MM, Embedding, call_submodule
    logits = call_submodule(MM, "head", cp, h)
    if "direct" in cp.params:
        logits += call_submodule(Embedding, "direct", cp, tok)
    return logits


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("direct", [False, True])
def test_folded_head_equals_the_noisers_matmuls_within_their_rounding_bound(rank, direct):
    """The head's rank-r terms folded into one GEMM per member = do_mm + do_emb summed in their own
    order: the same K = D + 2r + 1 terms per logit, so each side is within γ_{K+5}·Σ|terms| of the
    exact sum (npegg.conformance.tolerance) and the two within twice that of each other."""
    from npegg.conformance.tolerance import gamma
    from npegg.models.lm import _folded_head
    cp, h, tok = _head_case(rank, direct)
    folded, plain = _folded_head(cp, h, tok), _unfolded_head(cp, h, tok)
    assert folded is not None and folded.dtype == plain.dtype == np.float32 and folded.shape == plain.shape
    f64 = lambda a: np.abs(np.asarray(a, np.float64))
    a_h, b_h, s_h = unit_lora(cp.frozen_noiser_params, 0.05, cp.iterinfo, cp.params["head"].shape, cp.es_tree_key["head"])
    terms = f64(h) @ f64(cp.params["head"]).T + np.abs(s_h)[:, None, None] * np.matmul(np.matmul(f64(h), f64(b_h)), f64(a_h).transpose(0, 2, 1))
    if direct:
        a_d, b_d, s_d = unit_lora(cp.frozen_noiser_params, 0.05, cp.iterinfo, (256, 256), cp.es_tree_key["direct"])
        rows = f64(a_d)[np.arange(len(tok))[:, None], tok]                       # (P, T, r)
        terms += f64(cp.params["direct"])[tok] + np.abs(s_d)[:, None, None] * np.matmul(rows, f64(b_d).transpose(0, 2, 1))
    bound = 2 * gamma(h.shape[-1] + 2 * rank + 6) * terms
    assert np.all(np.abs(folded.astype(np.float64) - plain) <= bound)


def test_the_head_folds_only_for_eggroll_style_noise():
    """EggRoll and the noisers whose forward is EggRoll's fold; OpenES (full rank) and Sparse (k
    entries) add another perturbation, so their head goes through their own do_mm and do_emb."""
    from npegg.models.lm import _folded_head
    from npegg.noiser import AltEggRoll, EggRollBS, OpenES, Sparse
    for noiser, folds, settings in ((EggRoll, True, {}), (AltEggRoll, True, {}), (EggRollBS, True, {"group_size": 3}),
                                    (OpenES, False, {}), (Sparse, False, {})):
        cp, h, tok = _head_case(1, True, noiser=noiser, **settings)
        assert (_folded_head(cp, h, tok) is not None) == folds, noiser.__name__
        np.testing.assert_allclose(ByteLM._head(cp, h, tok), _unfolded_head(cp, h, tok), rtol=1e-5, atol=1e-5)
    cp, h, tok = _head_case(1, True)
    assert _folded_head(cp._replace(iterinfo=None), h, tok) is None             # the plain model: shared GEMM


def _exact_log_softmax_at(logits, targets):
    z = np.asarray(logits, np.float64)
    m = z.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(-1))
    return np.take_along_axis(z, targets[..., None].astype(int), -1)[..., 0] - lse, z.max(-1) - lse, lse - m[..., 0]


@pytest.mark.parametrize("spread", [3.0, 30.0, 500.0])
def test_log_softmax_at_is_within_its_rounding_bound_of_float64(spread):
    """Blocks (P, T, V) whose rows sit at different heights (spread: up to 500 apart, so some rows'
    means lie more than SHIFT_SLACK below their block's maximum and take their own). Against the
    float64 value: z − c, exp (NumPy's SIMD exp: ≤ 4 ulp), the sum of V positive terms (γ_V), log
    (≤ 4 ulp) and the final difference give |Δ| ≤ γ_{V+16} + 8u·(|z_t − c| + |log Σ|), c − max z ≤ 60."""
    from npegg.conformance.tolerance import U, gamma
    from npegg.models.lm import SHIFT_SLACK
    rng = np.random.default_rng(int(spread))
    P, T, V = 4, 50, 256
    logits = (rng.normal(0, 3, (P, T, V)) + rng.uniform(-spread, 0, (P, T, 1))).astype(np.float32)
    targets = rng.integers(0, V, (P, T))
    got = log_softmax_at(logits.copy(), targets)
    exact, _, log_sum = _exact_log_softmax_at(logits, targets)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    block_gap = logits.max(axis=(1, 2))[:, None] - logits.max(-1)               # c − max z for a block shift
    worst = np.minimum(block_gap, SHIFT_SLACK + 3 * 3.0)                        # rows far below take their own max
    bound = gamma(V + 16) + 8 * U * (np.abs(exact) + np.abs(log_sum) + 2 * worst)
    assert np.all(np.abs(got - exact) <= bound)
    if spread == 500.0:
        assert (block_gap > SHIFT_SLACK + 20).any()                              # the per-row path was taken
