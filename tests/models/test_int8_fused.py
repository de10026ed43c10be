"""The fused EGG step loop (``models.egg_fused``) gives the bits of its slow twin, ``EGG.forward``.

``generate(fused=False)`` steps through the Model interface (every parameter read through the
noiser on every step, int8/int32 arithmetic); the default steps ``FusedEGG`` (noise gathered
once, exact integers held in float). Each test runs both on the same inputs and compares every
output with ``np.array_equal``: random models, then the extremes (weights and noise at ±127, a
stored −128, norms whose mean rounds to 0, wide layers that need float64).
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg import keys as K
from npegg.int8.intmm import do_mm
from npegg.int8.loglik import int_ll, int_ll_columns
from npegg.models import egg_fused
from npegg.models.common import simple_es_tree_key
from npegg.models.egg import EGG, generate
from npegg.noise import InjectedNoise, Int8NoiseTable
from npegg.noiser.qeggroll import QEggRoll
from npegg.tree import tree_items, unflatten


def _model(h, layers, vocab=256, seed=3):
    init = EGG.rand_init(K.key(seed), h, layers, vocab)
    return init.params, simple_es_tree_key(init.params, K.key(seed + 1), init.scan_map)


def _both(params, keys, frozen, nparams, iterinfo, tokens, state, reset=None):
    """(fused, slow) SequenceOuts of the same call, every output recorded."""
    args = (QEggRoll, frozen, nparams, None, params, keys, iterinfo, tokens[:, :-1], tokens[:, 1:], state)
    return (generate(*args, record=True, reset=reset),
            generate(*args, record=True, reset=reset, fused=False))


def _assert_same(a, b):
    for field in a._fields:
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), field


@pytest.mark.parametrize("h, layers, pop, t_len, sigma_shift, rank", [
    (16, 2, 8, 7, 4, 1), (32, 2, 64, 12, 4, 1), (8, 1, 6, 5, 0, 2), (5, 2, 4, 6, -4, 1), (32, 1, 16, 10, 27, 3),
    (12, 3, 10, 4, 2, 1), (8, 2, 6, 37, 4, 1)])
def test_fused_generate_matches_the_model_steps(h, layers, pop, t_len, sigma_shift, rank):
    """Plain and perturbed, any width (H = 5, 12: the norm's ⌊Σ|x| / H⌋ is a true division),
    ranks 1–3, σ from −4 (no shift) to 27, states including −128, resets mid-sequence, and T = 37
    (the embedding runs in blocks of 16 steps)."""
    params, keys = _model(h, layers)
    frozen, nparams = QEggRoll.init_noiser(params, sigma_shift, rank=rank,
                                           noise=Int8NoiseTable(seed=5, log2_size=18))
    rng = np.random.default_rng(h * 100 + layers)
    tokens = rng.integers(0, 256, (pop, t_len + 1)).astype(np.uint8)
    tokens[0, 3] = tokens[1, t_len // 2] = tokens[-1, t_len - 1] = 0       # document starts
    state = rng.integers(-128, 128, (pop, layers, h)).astype(np.int8)
    for iterinfo in (None, (7, np.arange(pop))):
        _assert_same(*_both(params, keys, frozen, nparams, iterinfo, tokens, state))


def _extreme_noise(params, es_map, keys, members, rng, value=127):
    """InjectedNoise with every factor at ±value and full-rank noise at ±(value·value) (the
    largest products the int8 factors can make)."""
    records = {}
    kinds, keyed = dict(tree_items(es_map)), dict(tree_items(keys))
    for path, leaf in tree_items(params):
        k = np.asarray(keyed[path])
        stack = k if k.ndim == 2 else k[None]
        shape = np.shape(leaf)[1:] if k.ndim == 2 else np.shape(leaf)
        for key in stack:
            if kinds[path] == 0:
                rec = {"E": (rng.choice([-1, 1], (len(members),) + shape) * value * value).astype(np.int32)}
            else:
                rec = {"A": (rng.choice([-1, 1], (len(members), shape[0], 1)) * value).astype(np.int8),
                       "B": (rng.choice([-1, 1], (len(members), shape[1], 1)) * value).astype(np.int8)}
            records[key.tobytes()] = {"members": members, **rec}
    return InjectedNoise(records)


def test_fused_generate_matches_at_the_extremes(monkeypatch):
    """Weights and biases at ±127, noise factors at ±127, σ = −4: the low-rank terms leave
    float32's exact range, so the fused step must take its int32 path, and agree."""
    h, layers, pop = 16, 2, 6
    init = EGG.rand_init(K.key(8), h, layers, 256)
    rng = np.random.default_rng(8)
    params = unflatten({p: (rng.choice([-1, 1], v.shape) * 127).astype(np.int8) for p, v in tree_items(init.params)})
    keys = simple_es_tree_key(params, K.key(9), init.scan_map)
    members = np.arange(pop)
    noise = _extreme_noise(params, init.es_map, keys, members, rng)
    frozen, nparams = QEggRoll.init_noiser(params, -4, noise=noise)
    calls = []
    monkeypatch.setattr(egg_fused.MMGroup, "through_int32",
                        lambda self, x, f=egg_fused.MMGroup.through_int32: calls.append(1) or f(self, x))
    tokens = rng.integers(1, 256, (pop, 9)).astype(np.uint8)
    state = rng.choice(np.array([-128, -127, 127], np.int8), (pop, layers, h))
    _assert_same(*_both(params, keys, frozen, nparams, (3, members), tokens, state))
    assert calls                                                            # the int32 path ran


def test_fused_generate_matches_with_a_stored_minus_128_and_zero_rows():
    """A −128 in the plain embedding table counts as −128 in the first norm (int8 abs), and a zero
    row makes Σ|x| < H, the norm's row 0 (−1 / −2); both as the model steps do."""
    h, layers = 8, 2
    params, keys = _model(h, layers)
    emb = params["emb"].copy()
    emb[65] = -128                                                          # every entry of byte 65
    emb[66, :4] = -128
    emb[67] = 0                                                             # Σ|x| = 0 < H
    emb[68] = [1, 0, 0, 0, 0, 0, -1, 0]                                     # Σ|x| = 2 < H
    params = {**params, "emb": emb}
    frozen, nparams = QEggRoll.init_noiser(params, 4, noise=Int8NoiseTable(seed=5, log2_size=18))
    tokens = np.array([[65, 66, 67, 68, 65, 67], [67, 67, 66, 65, 68, 68]], np.uint8)
    state = np.zeros((2, layers, h), np.int8)
    fused, slow = _both(params, keys, frozen, nparams, None, tokens, state)
    _assert_same(fused, slow)
    assert egg_fused.bind(QEggRoll, frozen, nparams, params, keys, None).emb_wraps


def test_fused_generate_takes_float64_when_float32_cannot_hold_the_sums():
    """H = 256 (the MLP's second matmul has I = 1024) with a −128 weight: I · 128 · 128 = 2²⁴ is
    past float32's exact range, so ``bind`` picks float64; the bits still agree."""
    h = 256
    params, keys = _model(h, 1)
    w = params["blocks"]["mlp"]["1"]["weight"].copy()
    w[0, 0, 0] = -128
    params["blocks"]["mlp"]["1"]["weight"] = w
    frozen, nparams = QEggRoll.init_noiser(params, 4, noise=Int8NoiseTable(seed=5, log2_size=18))
    assert egg_fused.bind(QEggRoll, frozen, nparams, params, keys, (0, np.arange(2))).dt is np.float64
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 256, (2, 4)).astype(np.uint8)
    state = rng.integers(-127, 128, (2, 1, h)).astype(np.int8)
    _assert_same(*_both(params, keys, frozen, nparams, (0, np.arange(2)), tokens, state))


@pytest.mark.parametrize("vocab", [1, 7, 300])
def test_fused_generate_matches_for_other_vocabularies(vocab):
    """V = 1, 7 and 300 (past 267, where the LOG2 index clamps)."""
    params, keys = _model(8, 1, vocab)
    frozen, nparams = QEggRoll.init_noiser(params, 4, noise=Int8NoiseTable(seed=5, log2_size=18))
    rng = np.random.default_rng(vocab)
    tokens = rng.integers(0, vocab, (4, 6)).astype(np.int64)
    state = rng.integers(-127, 128, (4, 1, 8)).astype(np.int8)
    for iterinfo in (None, (2, np.arange(4))):
        _assert_same(*_both(params, keys, frozen, nparams, iterinfo, tokens, state))


def test_mm_group_equals_do_mm_on_random_and_extreme_inputs(monkeypatch):
    """One stacked ``MMGroup`` (W_f; W_h) against ``intmm.do_mm`` of each weight, member by member,
    for inputs and factors drawn from the whole int8 range with many entries at the ends, and
    with B aligned to x (|x·B| at its largest, so the int32 path must run); ``shifted`` is the
    same plus 128."""
    calls = []
    monkeypatch.setattr(egg_fused.MMGroup, "through_int32",
                        lambda self, x, f=egg_fused.MMGroup.through_int32: calls.append(1) or f(self, x))
    rng = np.random.default_rng(0)
    pop, i, o, rank = 12, 32, 24, 2

    def int8s(shape):
        return np.where(rng.random(shape) < 0.3, rng.choice([-127, 127], shape),
                        rng.integers(-127, 128, shape)).astype(np.int8)
    for shift in (0, 4, 8, 31):
        for aligned in (False, True):
            x = int8s((pop, i))
            x[0] = -128                                                     # a caller's −128 state
            ws = [int8s((o, i)) for _ in range(2)]
            bs = [np.where(x >= 0, 127, -127).astype(np.int8)[:, :, None].repeat(rank, 2) if aligned
                  else int8s((pop, i, rank)) for _ in range(2)]
            fs = [(int8s((pop, o, rank)), b, shift) for b in bs]
            for dt in (np.float32, np.float64):
                plain = egg_fused._group([(w, None) for w in ws], dt)
                pert = egg_fused._group(list(zip(ws, fs)), dt)
                xt = x.T.astype(dt)
                for n in range(2):
                    rows = slice(n * o, (n + 1) * o)
                    assert np.array_equal(plain(xt)[rows].T, do_mm(ws[n], x))
                    want = do_mm(ws[n], x, fs[n][0], fs[n][1], shift - 4)
                    assert np.array_equal(pert(xt)[rows].T, want)
                    assert np.array_equal(pert.shifted(xt)[rows].T, want.astype(np.intp) + 128)
                    assert np.array_equal(plain.shifted(xt)[rows].T, do_mm(ws[n], x).astype(np.intp) + 128)
    assert calls                                                            # the aligned cases took int32


def test_int_ll_columns_equals_int_ll():
    """The gather-and-gemv log-likelihood equals ``int_ll`` for logits across [−127, 127]."""
    rng = np.random.default_rng(2)
    for vocab in (1, 7, 256, 300):
        logits = rng.integers(-127, 128, (50, vocab)).astype(np.int8)
        logits[0], logits[1] = 127, -127
        logits[2, : vocab // 2] = 127
        target = rng.integers(0, vocab, 50)
        lp = logits.T.astype(np.intp) + 128
        assert np.array_equal(int_ll_columns(lp, target), int_ll(logits, target))


def test_noiser_without_lowrank_noise_steps_through_the_model():
    """A noiser that does not offer ``lowrank_noise`` gets the Model steps (``bind`` declines)."""
    class Plain(QEggRoll):
        lowrank_noise = None

    params, keys = _model(8, 1)
    frozen, nparams = QEggRoll.init_noiser(params, 4, noise=Int8NoiseTable(seed=5, log2_size=18))
    assert egg_fused.bind(Plain, frozen, nparams, params, keys, None) is None
    tokens = np.arange(10, 20, dtype=np.uint8)[None]
    out = generate(Plain, frozen, nparams, None, params, keys, None, tokens[:, :-1], tokens[:, 1:],
                   np.zeros((1, 1, 8), np.int8))
    ref = generate(QEggRoll, frozen, nparams, None, params, keys, None, tokens[:, :-1], tokens[:, 1:],
                   np.zeros((1, 1, 8), np.int8), fused=False)
    assert np.array_equal(out.ll, ref.ll) and np.array_equal(out.final_state, ref.final_state)
