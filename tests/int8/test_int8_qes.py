"""Q-EGGROLL's integer fitness, threshold schedule and ±1 step (``npegg.int8.qes``).

Parity with ``qegg_fitness*.npz`` and ``qegg_thresholds*.npz``; the full update against
``qegg_update*.npz`` goes through the noiser in ``test_int8_parity.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg.int8 import qes
from parity import group, load, parity_files


@pytest.mark.parametrize("path", parity_files("qegg_fitness*.npz"))
def test_fitness_matches_reference(path):
    """Fast sign fitness, and the quirky normalized one (ties −1, int32-square overflow)."""
    v = load(path)
    assert np.array_equal(v["diff"], v["raw_scores"][0::2].astype(np.int64) - v["raw_scores"][1::2])
    fast = qes.fitness_sign(v["raw_scores"])
    slow = qes.fitness_normalized(v["raw_scores"])
    assert fast.dtype == v["fast"].dtype == np.int8 and np.array_equal(fast, v["fast"])
    assert slow.dtype == v["slow"].dtype == np.int8 and np.array_equal(slow, v["slow"])


@pytest.mark.parametrize("path", parity_files("qegg_thresholds*.npz"))
def test_threshold_schedule_matches_reference(path):
    """α_e and int32(Φ⁻¹(1 − α_e/2)·16) per epoch, for every alpha group in the file."""
    v = load(path)
    decay = int(v["meta/alpha_decay_timestep"])
    names = sorted({k.split("/")[0] for k in v if k.startswith("alpha")})
    assert names
    for name in names:
        g = group(v, name)
        alpha_t, thr = qes.threshold_schedule(float(name[len("alpha"):]), len(g["threshold"]), decay)
        assert np.array_equal(alpha_t, g["alpha_t"])
        assert thr.dtype == g["threshold"].dtype and np.array_equal(thr, g["threshold"])


def test_fitness_ties_are_zero_fast_and_minus_one_slow():
    """A tie is 0 for the sign fitness but −1 for the normalized one (x // 0 with x = 0)."""
    raw = np.array([5, 5, 7, 3, 3, 7], np.int32)
    assert list(qes.fitness_sign(raw)) == [0, 1, -1]
    assert list(qes.fitness_normalized(raw)) == [-1, 16, -16]


def test_step_is_strict_and_moves_zero_votes_down_at_threshold_zero():
    """τ ≤ 0 moves every entry, Z = 0 downward; 16|Z| = τ moves (the comparison is strict)."""
    p = np.array([0, 0, 0, 127, -127], np.int8)
    z = np.array([0, 1, -1, 5, -5], np.int32)
    assert list(qes.threshold_step(p, z, 0, 4, use_clt=False)) == [-1, 1, -1, 127, -127]
    # threshold 2, N = 4: τ = 2·2 = 4 ≤ 16·|±1| → moves, Z = 0 stays; use_clt: τ = 1024 → stays
    assert list(qes.threshold_step(p[:3], z[:3], 2, 4, use_clt=False)) == [0, 1, -1]
    assert list(qes.threshold_step(p[:3], z[:3], 2, 4, use_clt=True)) == [0, 0, 0]
    # threshold 4, N = 16: τ = 16 = 16·|±1| exactly, not < τ → moves
    assert list(qes.threshold_step(p[1:3], z[1:3], 4, 16, use_clt=False)) == [1, -1]


def test_step_uses_isq_of_the_number_of_fitnesses():
    """τ uses ⌊√N⌋ with N = pop/2: threshold 6, N = 8 gives τ = 12 ≤ 16 (with √8, 16.97 > 16)."""
    p = np.zeros(1, np.int8)
    assert qes.threshold_step(p, np.array([1]), 6, 8, use_clt=False)[0] == 1
    assert qes.threshold_step(p, np.array([0]), 6, 8, use_clt=False)[0] == 0


def test_votes_sum_per_member_outer_products():
    """vote_lowrank == Σᵢ fᵢ Aᵢ Bᵢᵀ per member (einsum twin); sign variant with sgn()."""
    rng = np.random.default_rng(0)
    a = rng.integers(-86, 87, (6, 5, 2)).astype(np.int8)
    b = rng.integers(-86, 87, (6, 3, 2)).astype(np.int8)
    f = rng.integers(-1, 2, 6).astype(np.int8)
    want = np.einsum("n,nar,nbr->ab", f.astype(int), a.astype(int), b.astype(int))
    assert np.array_equal(qes.vote_lowrank(f, a, b, True), want)
    want = np.einsum("n,nar,nbr->ab", f.astype(int), np.sign(a).astype(int), np.sign(b).astype(int))
    assert np.array_equal(qes.vote_lowrank(f, a, b, False), want)
    e = rng.integers(-7396, 7397, (6, 4, 2)).astype(np.int32)
    assert np.array_equal(qes.vote_full(f, e, True), np.einsum("n,nij->ij", f.astype(int), e))
