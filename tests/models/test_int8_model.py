"""Properties of the int8 EGG model and QEggRoll with the real (table) noise source."""
from __future__ import annotations

import numpy as np
import pytest

from npegg import keys as K
from npegg.models.common import simple_es_tree_key
from npegg.models.egg import EGG, generate
from npegg.noise import Int8NoiseTable
from npegg.noiser.qeggroll import QEggRoll
from npegg.tree import flatten

V, L, H = 256, 2, 16


@pytest.fixture(scope="module")
def model():
    frozen_params, params, scan_map, es_map = EGG.rand_init(K.fold_in(K.key(3), 0), H, L, V)
    keys = simple_es_tree_key(params, K.fold_in(K.key(3), 1), scan_map)
    return params, es_map, keys


def noiser(params, **kw):
    return QEggRoll.init_noiser(params, 4, noise=Int8NoiseTable(seed=5, log2_size=18), **kw)


def test_rand_init_shapes_and_scales(model):
    """Reference init: LN weights 16, biases 0, weights round(16·N(0,1)) as int8 ±127."""
    params, es_map, _ = model
    flat = flatten(params)
    assert all(v.dtype == np.int8 for v in flat.values())
    assert flat["emb"].shape == (V, H) and flat["head"].shape == (V, H)
    assert flat["blocks/mlp/0/weight"].shape == (L, 4 * H, H) and flat["blocks/mlp/1/weight"].shape == (L, H, 4 * H)
    assert np.all(flat["ln_out/weight"] == 16) and np.all(flat["blocks/ln1/weight"] == 16)
    assert np.all(flat["blocks/att/bf"] == 0) and np.all(flat["blocks/att/bh"] == 0)
    w = flat["blocks/mlp/0/weight"].astype(float)
    assert abs(w.std() - 16) < 1.5 and np.array_equal(w, np.round(w))
    assert flatten(es_map) == {**{k: 1 for k in flat if k.endswith(("Wf", "Uf", "Wh", "Uh", "head", "mlp/0/weight",
                                                                    "mlp/1/weight"))},
                               **{k: 0 for k in flat if k.endswith(("bf", "bh", "ln1/weight", "ln2/weight", "ln_out/weight"))},
                               "emb": 2}


def test_population_rows_are_independent(model):
    """Member p of a population forward equals the same member run alone (no cross-talk)."""
    params, _, keys = model
    frozen, nparams = noiser(params)
    members = np.array([0, 1, 2, 7])
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, (4, 6)).astype(np.uint8)
    state = rng.integers(-127, 128, (4, L, H)).astype(np.int8)
    out = generate(QEggRoll, frozen, nparams, None, params, keys, (9, members), tokens, tokens, state)
    for p in range(4):
        one = generate(QEggRoll, frozen, nparams, None, params, keys, (9, members[p:p + 1]),
                       tokens[p:p + 1], tokens[p:p + 1], state[p:p + 1])
        assert np.array_equal(one.ll[0], out.ll[p]) and np.array_equal(one.final_state[0], out.final_state[p])
    assert not np.array_equal(out.ll[0], out.ll[1])     # antithetic partners see ± noise


def test_params_stay_int8_after_many_updates(model):
    """Threshold 0 moves every entry every epoch; random votes, then 260 identical votes
    (noise_reuse=0: the same noise each epoch) drive every entry to ±127, where it must stay."""
    params, es_map, keys = model
    frozen, nparams = noiser(params, update_threshold=0, noise_reuse=0)
    rng = np.random.default_rng(1)
    pop = 8
    members = np.arange(pop)
    for epoch in range(300):
        fitness = rng.choice(np.array([-1, 0, 1], np.int8), pop // 2) if epoch < 40 else np.ones(pop // 2, np.int8)
        nparams, params = QEggRoll.do_updates(frozen, nparams, params, keys, fitness,
                                              (np.full(pop, epoch), members), es_map)
        flat = flatten(params)
        assert all(v.dtype == np.int8 and v.min() >= -127 and v.max() <= 127 for v in flat.values())
    assert all(np.all(np.abs(v) == 127) for v in flat.values())


def test_update_chunking_does_not_change_the_result(model):
    """Z is an integer sum: chunks of 1 member or all at once give the same params."""
    params, es_map, keys = model
    pop = 12
    fitness = np.array([1, -1, 0, 1, 1, -1], np.int8)
    info = (np.full(pop, 40), np.arange(pop))
    outs = []
    for chunk in (1, 4, None):
        frozen, nparams = noiser(params, update_chunk=chunk, alpha=0.5, use_clt=True)
        outs.append(flatten(QEggRoll.do_updates(frozen, nparams, params, keys, fitness, info, es_map)[1]))
    for leaf in outs[0]:
        assert np.array_equal(outs[0][leaf], outs[1][leaf]) and np.array_equal(outs[0][leaf], outs[2][leaf])


def test_state_resets_before_a_zero_byte(model):
    """A 0 input byte zeroes the whole state stack before its step: any carried state gives the same step."""
    params, _, keys = model
    frozen, nparams = noiser(params)
    tokens = np.array([[0, 65, 66]], np.uint8)
    s1 = np.zeros((1, L, H), np.int8)
    s2 = np.full((1, L, H), 100, np.int8)
    a = generate(QEggRoll, frozen, nparams, None, params, keys, None, tokens, tokens, s1)
    b = generate(QEggRoll, frozen, nparams, None, params, keys, None, tokens, tokens, s2)
    assert np.array_equal(a.ll, b.ll) and np.array_equal(a.final_state, b.final_state)


def test_update_uses_only_the_even_members(model):
    """do_updates keeps iterinfos[::2]: fitness i goes with member 2i's noise; odd ids are never read."""
    params, es_map, keys = model
    frozen, nparams = noiser(params, update_threshold=0)
    fitness = np.array([1, -1, 0, 1], np.int8)
    epochs = np.full(8, 7)
    a = flatten(QEggRoll.do_updates(frozen, nparams, params, keys, fitness, (epochs, np.arange(8)), es_map)[1])
    odd_changed = np.array([0, 101, 2, 57, 4, 9, 6, 1000])
    b = flatten(QEggRoll.do_updates(frozen, nparams, params, keys, fitness, (epochs, odd_changed), es_map)[1])
    even_changed = np.array([0, 1, 12, 3, 4, 5, 6, 7])
    c = flatten(QEggRoll.do_updates(frozen, nparams, params, keys, fitness, (epochs, even_changed), es_map)[1])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
