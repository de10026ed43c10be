"""Inputs the library used to accept and get silently wrong: each now a clear error, or the right answer."""
import re

import numpy as np
import pytest

from npegg import fitness as F
from npegg import optim
from npegg.es import ES
from npegg.models import MLP

MLP_KW = dict(in_dim=2, out_dim=1, hidden_dims=[4])
ES_KW = dict(pop_size=8, sigma=0.1, lr=0.1)


def test_zscore_float16_with_large_spread_is_not_all_zeros():
    """float16 variance overflows past 65504; the z-score is computed in float32 instead."""
    raw = np.linspace(-300, 300, 8).astype(np.float16)
    f = F.zscore(raw)
    want = (raw.astype(np.float64) - raw.astype(np.float64).mean()) / np.sqrt(raw.astype(np.float64).var() + 1e-5)
    assert np.all(np.isfinite(f)) and np.allclose(f, want, rtol=1e-6)
    assert np.array_equal(F.zscore(raw.astype(np.float32)), F.zscore(raw))   # float16 is float32's answer


@pytest.mark.parametrize("model_kwargs, noiser_kwargs, names", [
    ({}, {"grup_size": 4}, "grup_size"),
    ({"activaton": "gelu"}, {}, "activaton"),
    ({}, {"rnak": 2, "noise_resue": 1}, "noise_resue, rnak"),
])
def test_misspelled_keyword_arguments_are_named(model_kwargs, noiser_kwargs, names):
    with pytest.raises(TypeError, match=f"unknown keyword argument\\(s\\) {names}"):
        ES.create(MLP, MLP_KW | model_kwargs, **ES_KW, **noiser_kwargs)


def test_integer_model_dtype_is_refused():
    with pytest.raises(TypeError, match="dtype='int32'.*floating-point"):
        ES.create(MLP, MLP_KW | {"dtype": "int32"}, **ES_KW)


def test_schedules_returning_negative_lr_or_nan_sigma_are_refused():
    with pytest.raises(ValueError, match="lr schedule returned -0.5 at step 0"):
        ES.create(MLP, MLP_KW, pop_size=8, sigma=0.1, lr=lambda k: -0.5)
    with pytest.raises(ValueError, match="sigma schedule returned nan at epoch 0"):
        ES.create(MLP, MLP_KW, pop_size=8, sigma=lambda k: float("nan"), lr=0.1)
    es, st = ES.create(MLP, MLP_KW, pop_size=8, sigma=lambda k: 0.1 if k < 1 else float("nan"), lr=0.1)
    with pytest.raises(ValueError, match="sigma schedule returned nan at epoch 1"):
        es.step(st, np.arange(8.0))
    es, st = ES.create(MLP, MLP_KW, pop_size=8, sigma=0.1, lr=lambda k: 0.1 - k)
    st = es.step(st, np.arange(8.0))                     # step 0: lr 0.1
    with pytest.raises(ValueError, match="learning_rate schedule returned -0.9 at step 1"):
        es.step(st, np.arange(8.0))
    with pytest.raises(ValueError, match="learning_rate schedule returned"):
        opt = optim.adam(lambda k: float("inf"))
        opt.update({"w": np.ones(2)}, opt.init({"w": np.ones(2)}), {"w": np.ones(2)})


def test_step_refuses_params_of_another_shape():
    es, st = ES.create(MLP, MLP_KW, **ES_KW)
    raw = np.arange(8.0)
    first = sorted(st.params)[0]
    missing = {k: v for k, v in st.params.items() if k != first}
    with pytest.raises(ValueError, match=f"missing leaves {first}/"):
        es.step(type(st)(missing, st.noiser_params), raw)
    extra = {**st.params, "extra": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="leaves the model does not: extra"):
        es.step(type(st)(extra, st.noiser_params), raw)
    with pytest.raises(ValueError, match="leaves the model does not: extra"):
        es.forward(type(st)(extra, st.noiser_params), np.zeros((8, 2)))
    leaf = st.params["0"]["weight"]
    wrong = {**st.params, "0": {**st.params["0"], "weight": leaf[:, :-1]}}
    with pytest.raises(ValueError, match=re.escape(f"0/weight has shape {leaf[:, :-1].shape}, the model's is {leaf.shape}")):
        es.step(type(st)(wrong, st.noiser_params), raw)


def test_rows_seen_needs_a_noiser_with_a_per_row_estimate():
    """ES.step(rows_seen=…) with a noiser that has no such estimate (the plain Noiser, Q-EGGROLL)
    is refused by name, before the update; with EggRoll a wrong leaf is named."""
    from npegg.noiser import Noiser
    es, st = ES.create(MLP, MLP_KW, **ES_KW, noiser=Noiser)
    with pytest.raises(ValueError, match="rows_seen: the Noiser noiser has no per-row estimate"):
        es.step(st, np.arange(8.0), rows_seen={"0/weight": np.ones((8, 4), bool)})
    es, st = ES.create(MLP, MLP_KW, **ES_KW)
    with pytest.raises(ValueError, match="rows_seen: '0/weight' is not an EMB_PARAM leaf"):
        es.step(st, np.arange(8.0), rows_seen={"0/weight": np.ones((8, 4), bool)})


@pytest.mark.parametrize("kwargs, match", [
    (dict(pop_size=16.7), r"pop_size must be an integer >= 1, got 16.7 \(float\)"),
    (dict(pop_size=8.0), r"pop_size must be an integer >= 1, got 8.0 \(float\)"),     # integral floats too
    (dict(pop_size=True), r"pop_size must be an integer >= 1, got True \(bool\)"),
    (dict(pop_size="8"), r"pop_size must be an integer >= 1, got '8' \(str\)"),
    (dict(seed=1.5), r"seed must be an integer >= 0 and < 4294967296, got 1.5 \(float\)"),
    (dict(seed=True), r"seed must be an integer >= 0 and < 4294967296, got True \(bool\)"),
    (dict(rank=True), r"rank must be an integer >= 1, got True \(bool\)"),
    (dict(group_size=np.True_), r"group_size must be an integer >= 0, got .*True.* \(bool_?\)"),
    (dict(noise_reuse=1.0), r"noise_reuse must be an integer >= 0, got 1.0 \(float\)"),
    (dict(sigma="0.1"), r"sigma must be a finite number > 0 or a schedule .*, got '0.1' \(str\)"),
    (dict(sigma=None), r"sigma must be a finite number > 0 or a schedule .*, got None \(NoneType\)"),
    (dict(sigma=[0.1]), r"sigma must be a finite number > 0 or a schedule .*, got \[0.1\] \(list\)"),
    (dict(sigma=True), r"sigma must be a finite number > 0 or a schedule .*, got True \(bool\)"),
    (dict(lr="fast"), r"lr must be a finite number >= 0 or a schedule .*, got 'fast' \(str\)"),
    (dict(lr=None), r"lr must be a finite number >= 0 or a schedule .*, got None \(NoneType\)"),
    (dict(lr=float("inf")), r"lr must be a finite number >= 0 or a schedule .*, got inf \(float\)"),
])
def test_es_create_refuses_counts_and_scales_of_the_wrong_kind_by_name(kwargs, match):
    """Issue 19: pop_size=16.7, seed=1.5 and rank=True were truncated silently; sigma/lr of the
    wrong type failed inside NumPy without naming the argument."""
    with pytest.raises(ValueError, match=match):
        ES.create(MLP, MLP_KW, **(ES_KW | kwargs))


def test_numpy_integers_and_float_scales_are_accepted():
    es, _ = ES.create(MLP, MLP_KW, pop_size=np.int64(8), sigma=np.float32(0.1), lr=0, seed=np.uint32(3),
                      rank=np.int32(2))
    assert es.pop_size == 8 and type(es.pop_size) is int and es.frozen_noiser_params["rank"] == 2


@pytest.mark.parametrize("model_kwargs, match", [
    (dict(hidden_dims=[0]), r"hidden_dims\[0\] must be an integer >= 1, got 0"),
    (dict(hidden_dims=[4, 2.5]), r"hidden_dims\[1\] must be an integer >= 1, got 2.5 \(float\)"),
    (dict(hidden_dims=4), r"hidden_dims must be a list of integers >= 1"),
    (dict(in_dim=0), r"in_dim must be an integer >= 1, got 0"),
    (dict(out_dim=True), r"out_dim must be an integer >= 1, got True \(bool\)"),
])
def test_model_widths_are_checked_by_name(model_kwargs, match):
    with pytest.raises(ValueError, match=match):
        ES.create(MLP, MLP_KW | model_kwargs, **ES_KW)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_dim=0, n_layers=1), "hidden_dim must be an integer >= 1, got 0"),
    (dict(hidden_dim=8, n_layers=1.0), r"n_layers must be an integer >= 1, got 1.0 \(float\)"),
    (dict(hidden_dim=8, n_layers=1, vocab=0), "vocab must be an integer >= 1, got 0"),
])
def test_language_model_sizes_are_checked_by_name(kwargs, match):
    from npegg import keys as K
    from npegg.models.egg import EGG
    from npegg.models.lm import ByteLM
    for model in (ByteLM, EGG):
        with pytest.raises(ValueError, match=match):
            model.rand_init(K.key(0), **kwargs)


def _slow_slices(table, starts, size):
    """The slow twin of ``NoiseTable.slices``: one Python slice per member, overflow by hand."""
    t, n = table.table, table.size
    rows = []
    for s in np.asarray(starts, np.int64):
        if table.overflow == "clamp":
            s = min(s, n - size)
        rows.append(t[(s + np.arange(size)) % n])
    return np.stack(rows)


@pytest.mark.parametrize("overflow", ["wrap", "clamp"])
def test_noise_views_fit_a_32_bit_index_and_slices_keep_their_bits(overflow, monkeypatch):
    """Issue 19: the (N, size) strided view of the table spanned more than 2³¹ − 1 bytes, which a
    32-bit NumPy (wasm32, armv7) refuses ("array is too big") on every forward. Every view is now
    at most 2³¹ − 1 bytes, and the slices read through the views in blocks are the same bits as
    one slice per member. (On a 64-bit NumPy ``VIEW_BYTES`` is the platform's larger limit and the
    whole window matrix is one view; the test sets the 32-bit limit, as wasm32 has it.)"""
    import npegg.noise as N
    from npegg.noise import Int8NoiseTable, NoiseTable
    monkeypatch.setattr(N, "VIEW_BYTES", 2**31 - 1)
    VIEW_BYTES = N.VIEW_BYTES
    for table in (NoiseTable(seed=1, overflow=overflow), Int8NoiseTable(seed=1, overflow=overflow)):
        n, item = table.size, table.table.itemsize
        for size in (8, 512, 3 * 4096 + 5, 1 << 17):
            per = table._rows_per_view(size)
            assert per * size * item <= VIEW_BYTES
            blocks = -(-table._rows(size) // per)
            assert n * size * item <= VIEW_BYTES or blocks > 1          # the whole matrix would not fit
            for b in {0, blocks // 2, blocks - 1}:
                view = table._view(size, b)
                assert view.nbytes <= VIEW_BYTES and view.size <= VIEW_BYTES
            rng = np.random.default_rng(size)
            edges = np.array([0, per - 1, per, 2 * per - 1, n - size, n - size + 1, n - 1]) % n
            starts = np.concatenate([edges, rng.integers(0, n, 60)])   # block edges and the table's end
            got = table.slices(starts, size)
            assert got.dtype == table.table.dtype and np.array_equal(got, _slow_slices(table, starts, size))


def test_noise_factors_are_the_same_bits_with_views_in_blocks():
    """lowrank/full through many small views = through one view (VIEW_BYTES lowered to force blocks)."""
    import npegg.noise as N
    key = np.array([3, 4], np.uint32)
    members = np.arange(64)
    one = N.NoiseTable(seed=2)
    want = one.lowrank(key, 5, members, (96, 40), 2, 1), one.full(key, 5, members, (7, 9), 1)
    old = N.VIEW_BYTES
    try:
        N.VIEW_BYTES = 1 << 16
        small = N.NoiseTable(seed=2)
        got = small.lowrank(key, 5, members, (96, 40), 2, 1), small.full(key, 5, members, (7, 9), 1)
        assert small._rows_per_view(272) < small.size
    finally:
        N.VIEW_BYTES = old
    for w, g in zip((*want[0], want[1]), (*got[0], got[1])):
        assert np.array_equal(w, g)


# -- new probes (issue 19, tried as a hostile user): each was accepted silently or failed without a name
def _fitness(es, state, members):
    return -np.asarray(members, np.float64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=True), r"epochs must be an integer >= 0, got True \(bool\)"),
    (dict(epochs=1, workers=True), r"workers must be an integer >= 1, got True \(bool\)"),
    (dict(epochs=1, chunk=2.5), r"chunk must be an integer >= 1, got 2.5 \(float\)"),
])
def test_train_refuses_bools_and_floats_for_counts(kwargs, match):
    es, st = ES.create(MLP, MLP_KW, **ES_KW)
    epochs = kwargs.pop("epochs")
    with pytest.raises(ValueError, match=match):
        es.train(st, _fitness, epochs, **kwargs)


def test_step_refuses_scores_that_are_not_numbers_and_a_fractional_epoch():
    es, st = ES.create(MLP, MLP_KW, **ES_KW)
    for raw in (np.array(list("abcdefgh")), np.array([None] * 8)):
        with pytest.raises(ValueError, match="raw_scores must be numbers"):
            es.step(st, raw)
    with pytest.raises(ValueError, match=r"state.epoch must be an integer >= 0, got 1.5"):
        es.step(type(st)(st.params, st.noiser_params, 1.5), np.arange(8.0))


def test_forward_members_refuses_ids_outside_the_population():
    es, st = ES.create(MLP, MLP_KW, **ES_KW)
    for ids in ([8], [-1], [[0, 1]], [0.0]):
        with pytest.raises(ValueError, match=r"members must be a 1-D array of member ids in \[0, pop_size=8\)"):
            es.forward_members(st, ids, np.zeros((np.size(ids), 2), np.float32))


def test_a_schedule_returning_a_non_number_is_named_and_model_kwargs_must_be_a_dict():
    with pytest.raises(ValueError, match="sigma schedule returned x at epoch 0"):
        ES.create(MLP, MLP_KW, pop_size=8, sigma=lambda e: "x", lr=0.1)
    es, st = ES.create(MLP, MLP_KW, pop_size=8, sigma=lambda e: 0.1 if e == 0 else "x", lr=0.1)
    with pytest.raises(ValueError, match="sigma schedule returned x at epoch 1"):
        es.step(st, np.arange(8.0))
    with pytest.raises(ValueError, match="model_kwargs must be a dict"):
        ES.create(MLP, None, **ES_KW)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=1.5), r"seed must be an integer in \[0, 2\*\*64\), got 1.5"),
    (dict(log2_size=10.5), r"log2_size must be an integer in \[4, 31\], got 10.5"),
    (dict(log2_size=True), r"log2_size must be an integer in \[4, 31\], got True"),
    (dict(cache_bytes=-1), r"cache_bytes must be an integer >= 0, got -1"),
])
def test_noise_table_settings_are_not_truncated(kwargs, match):
    from npegg.noise import NoiseTable
    with pytest.raises(ValueError, match=match):
        NoiseTable(**kwargs)


@pytest.mark.parametrize("x", [np.ones((8, 3)), np.ones(8), [[1.0, 2.0, 3.0]] * 8])
def test_an_input_of_the_wrong_width_names_the_layer_and_the_width(x):
    """An MLP that takes 2 features: 3, or none, is one ValueError saying so (it was NumPy's matmul
    error, or an AttributeError for a list), for the population forward and the plain one alike."""
    es, state = ES.create(MLP, MLP_KW, **ES_KW)
    for run in (lambda: es.forward(state, x), lambda: es.evaluate(state, x)):
        with pytest.raises(ValueError, match=r"last axis has 2 features; got an input of shape"):
            run()


def test_a_list_of_the_right_width_is_read_as_an_array():
    es, state = ES.create(MLP, MLP_KW, **ES_KW)
    x = [[0.5, -1.0]] * 8
    assert np.array_equal(es.forward(state, x), es.forward(state, np.asarray(x)))
