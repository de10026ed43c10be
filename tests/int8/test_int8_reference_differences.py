"""Where the int8 path deliberately differs from nano-egg, pinned (docs/reference-differences.md).

Each test names one input the reference accepts (or crashes on) that npegg refuses or computes
differently, and checks npegg's side of it: the clear error, or the number npegg gives.
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg import keys as K
from npegg.int8 import intmm, loglik, qes
from npegg.models.common import simple_es_tree_key
from npegg.models.egg import EGG, generate
from npegg.noise import Int8NoiseTable, start_indices
from npegg.noiser.qeggroll import QEggRoll

V, L, H = 256, 1, 16


@pytest.fixture(scope="module")
def model():
    _, params, scan_map, es_map = EGG.rand_init(K.fold_in(K.key(4), 0), H, L, V)
    return params, es_map, simple_es_tree_key(params, K.fold_in(K.key(4), 1), scan_map)


def noiser(params=None, **kw):
    return QEggRoll.init_noiser(params or {}, 4, noise=Int8NoiseTable(seed=1, log2_size=16), **kw)


# -- fitness and update --------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [np.arange(7, dtype=np.int32), np.zeros((2, 4), np.int32)])
def test_odd_member_counts_refused_because_the_reference_crashes(raw):
    """An odd count (the reference's reshape(-1, 2) crashes) or a 2-D array: ValueError."""
    frozen, nparams = noiser()
    with pytest.raises(ValueError, match="1-D array of even length"):
        QEggRoll.convert_fitnesses(frozen, nparams, raw)


def test_slow_fitness_update_raises_as_the_reference_crashes(model):
    """fast_fitness=False: the reference's update dies with a NameError; ours raises before work."""
    params, es_map, keys = model
    frozen, nparams = noiser(params, fast_fitness=False, update_threshold=0)
    f = QEggRoll.convert_fitnesses(frozen, nparams, np.array([3, 1, 2, 2], np.int32))
    assert f.tolist() == [16, -1]                                   # the fitness itself computes
    with pytest.raises(NotImplementedError, match="fast_fitness=False"):
        QEggRoll.do_updates(frozen, nparams, params, keys, f, (np.zeros(4, int), np.arange(4)), es_map)


def test_float_scores_get_the_reference_float32_sign():
    """Float scores: sign of the float32 difference (x64 off); NaN gives 0. Before, they were truncated."""
    raw = np.array([0.5, 0.2,                 # 0.3 > 0: +1 (truncating to int would give a tie, 0)
                    1.0, 1.0 + 1e-9,          # equal once cast to float32: 0
                    np.nan, 3.0,              # NaN difference: 0
                    np.inf, np.inf,           # inf − inf = NaN: 0
                    -np.inf, 5.0])            # −1
    assert qes.fitness_sign(raw).tolist() == [1, 0, 0, 0, -1]
    ints = np.random.default_rng(0).integers(-2**20, 2**20, 64)
    assert np.array_equal(qes.fitness_sign(ints.astype(np.float32)), qes.fitness_sign(ints.astype(np.int32)))


def test_slow_fitness_refuses_float_scores():
    """The quirky normalized fitness is defined on int32 scores only: floats raise, not truncate."""
    with pytest.raises(ValueError, match="raw_scores must be integers"):
        qes.fitness_normalized(np.array([0.5, 0.2]))


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma_shift=-5), "sigma_shift must be an integer in"),   # a negative shift: undefined
    (dict(sigma_shift=28), "sigma_shift must be an integer in"),   # a shift by 32+ bits: no noise left
    (dict(noise_reuse=-1), "noise_reuse"),
    (dict(rank=0), "rank must be"),
    (dict(alpha=0.0), "alpha must be > 0"),                        # reference: threshold int32(inf)
    (dict(alpha_decay_timestep=0), "alpha_decay_timestep"),        # reference: 0/0 → NaN thresholds
    (dict(update_threshold=2.5), "update_threshold must be None or an integer"),
    (dict(dtype="int16"), "dtype must be 'int8'"),
    (dict(use_ctl=False), "unknown QEggRoll.init_noiser arguments"),  # a typo must not fall back silently
])
def test_settings_the_reference_would_accept_are_refused(kwargs, match):
    kw = dict(sigma_shift=4) | kwargs
    with pytest.raises(ValueError, match=match):
        QEggRoll.init_noiser({}, **kw)


def test_extra_positional_arguments_are_refused():
    """The reference swallows *args; npegg names them."""
    with pytest.raises(ValueError, match="unknown QEggRoll.init_noiser arguments"):
        QEggRoll.init_noiser({}, 4, None, "int8")


def test_sigma_shift_down_to_minus_four_is_accepted_and_shifts_by_4_plus_sigma():
    """sigma_shift ∈ [−4, −1] works in the reference (shifts 0..3) and in npegg, with the same rule."""
    rng = np.random.default_rng(2)
    w = rng.integers(-127, 128, (5, 24)).astype(np.int8)
    x = rng.integers(-127, 128, (3, 2, 24)).astype(np.int8)
    a = rng.integers(-78, 79, (3, 5, 1)).astype(np.int8)
    b = rng.integers(-78, 79, (3, 24, 1)).astype(np.int8)
    for sigma in (-4, -1, 27):
        frozen, nparams = QEggRoll.init_noiser({}, sigma)
        assert nparams["sigma_shift"] == sigma
        acc = np.einsum("pmi,oi->pmo", x.astype(np.int64), w.astype(np.int64))
        low = np.einsum("pmi,pir,por->pmo", x.astype(np.int64), b.astype(np.int64), a.astype(np.int64))
        want = np.clip((acc + (low >> (4 + sigma))) // (16 * 4), -127, 127).astype(np.int8)
        assert np.array_equal(intmm.do_mm(w, x, a, b, sigma), want)
        assert np.array_equal(intmm.do_mm_dense(w, x, a, b, sigma), want)


def test_defaults_follow_the_reference_command_line_not_its_init_noiser():
    """use_clt=True and noise_reuse=1 (run.py's flags); the reference's init_noiser defaults use_clt=False."""
    frozen, nparams = QEggRoll.init_noiser({})
    assert frozen["use_clt"] is True and frozen["noise_reuse"] == 1 and nparams["sigma_shift"] == 4


# -- inputs --------------------------------------------------------------------------------------
def test_tokens_outside_the_vocabulary_are_refused(model):
    """JAX would clamp an out-of-range row or target; npegg raises, naming the argument."""
    params, _, keys = model
    table = np.zeros((7, 3), np.int8)
    for bad in ([[7]], [[-1]]):
        with pytest.raises(ValueError, match=r"tokens must lie in \[0, 7\)"):
            intmm.do_emb(table, np.array(bad))
    with pytest.raises(ValueError, match="tokens must be integer ids"):
        intmm.do_emb(table, np.array([[1.0]]))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\)"):
        loglik.int_ll(np.zeros((2, 5), np.int8), np.array([0, 5]))
    frozen, nparams = noiser(params)
    tokens = np.ones((2, 4), np.int64)
    tgt = tokens.copy()
    tgt[1, 3] = 256                                                 # the last step of the last member
    with pytest.raises(ValueError, match=r"tokens_tgt must lie in \[0, 256\)"):
        generate(QEggRoll, frozen, nparams, None, params, keys, None, tokens, tgt, np.zeros((2, L, H), np.int8))


def test_negative_members_and_mixed_epochs_are_refused(model):
    """Member ids are indices ≥ 0 and one epoch serves the whole population (the reference's driver)."""
    params, _, keys = model
    frozen, nparams = noiser(params)
    w, x = params["head"], np.zeros((2, H), np.int8)
    with pytest.raises(ValueError, match="must be >= 0"):
        QEggRoll.do_mm(frozen, nparams, w, keys["head"], (0, np.array([-1, 0])), x)
    with pytest.raises(ValueError, match="one value for the whole population"):
        QEggRoll.do_mm(frozen, nparams, w, keys["head"], (np.array([0, 1]), np.array([0, 1])), x)


def test_do_Tmm_raises_like_the_reference(model):
    params, _, keys = model
    frozen, nparams = noiser(params)
    with pytest.raises(NotImplementedError):
        QEggRoll.do_Tmm(frozen, nparams, params["head"], keys["head"], None, np.zeros((1, V), np.int8))


def test_noise_table_is_npeggs_own_and_indexes_with_the_low_bits_of_the_same_hash():
    """Not jax.random.normal: trunc(16·Irwin–Hall) in [−78, 78]; 2²⁵ entries, clamped slices by default.

    The start index is the reference's 30-bit index reduced to the table: its low 25 bits.
    """
    t = Int8NoiseTable(seed=0, log2_size=18)
    assert Int8NoiseTable().log2_size == 25 and t.overflow == "clamp"
    assert t.table.dtype == np.int8 and int(np.abs(t.table.astype(int)).max()) <= 78
    key, members = K.key(9), np.arange(0, 4000, 7)
    full = start_indices(key, 3, members, 1, 1 << 30)
    assert np.array_equal(start_indices(key, 3, members, 1, 1 << 25), full & ((1 << 25) - 1))


def test_other_dtypes_are_refused_by_the_model():
    """run.py has a --dtype flag, but its other dtypes keep an int8 division table and an 8-bit gate shift."""
    with pytest.raises(ValueError, match="EGG is the int8 model"):
        EGG.rand_init(K.key(0), H, L, V, "int16")


def test_update_refuses_fitnesses_other_than_signs(model):
    """±16 or −2 fitnesses: the reference's f·A wraps in int8 or not by dtype; npegg refuses them."""
    params, es_map, keys = model
    frozen, nparams = noiser(params, update_threshold=0)
    info = (np.zeros(4, int), np.arange(4))
    for bad in (np.array([16, -1], np.int8), np.array([2, 0], np.int32), np.array([np.nan, 1.0])):
        with pytest.raises(ValueError, match="fitnesses must be sign fitnesses"):
            QEggRoll.do_updates(frozen, nparams, params, keys, bad, info, es_map)
    _, new = QEggRoll.do_updates(frozen, nparams, params, keys, np.array([1.0, -1.0]), info, es_map)
    _, same = QEggRoll.do_updates(frozen, nparams, params, keys, np.array([1, -1], np.int8), info, es_map)
    assert all(np.array_equal(new[k], same[k]) for k in ("emb", "head"))     # float signs = int8 signs


def test_excluded_leaves_stay_where_the_reference_crashes(model):
    """es_map code 3: the reference calls _noop_update with too few arguments (TypeError); npegg keeps the leaf."""
    params, es_map, keys = model
    frozen, nparams = noiser(params, update_threshold=0)
    excluded = dict(es_map, head=3)
    _, new = QEggRoll.do_updates(frozen, nparams, params, keys, np.array([1, 1], np.int8),
                                 (np.zeros(4, int), np.arange(4)), excluded)
    assert np.array_equal(new["head"], params["head"])
    assert not np.array_equal(new["emb"], params["emb"])                     # τ = 0: the others all move


def test_convert_fitnesses_accepts_the_unused_num_episodes_list():
    frozen, nparams = noiser()
    raw = np.array([5, 3, 2, 2], np.int32)
    assert QEggRoll.convert_fitnesses(frozen, nparams, raw, [1, 1, 1, 1]).tolist() == [1, 0]


def test_logits_outside_the_int8_range_are_refused():
    """The reference would clamp EXP2's index; logits come from an int8 head, so npegg raises."""
    with pytest.raises(ValueError, match="logits must be int8"):
        loglik.int_ll(np.array([[300, 0]], np.int32), np.array([0]))
    wide = np.array([[-128, 127, 0]], np.int32)                              # int8 values in a wider dtype
    assert np.array_equal(loglik.int_ll(wide, np.array([1])), loglik.int_ll(wide.astype(np.int8), np.array([1])))


def test_state_must_be_int8(model):
    """An int32 state runs in the reference, but its blend then stops wrapping back (spec §2.6): refused."""
    params, _, keys = model
    frozen, nparams = noiser(params)
    tokens = np.ones((2, 3), np.int64)
    for bad in (np.zeros((2, L, H), np.int32), np.zeros((3, L, H), np.int8)):
        with pytest.raises(ValueError, match="state must be int8 of shape"):
            generate(QEggRoll, frozen, nparams, None, params, keys, None, tokens, tokens, bad)
