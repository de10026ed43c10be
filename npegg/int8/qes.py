"""Q-EGGROLL's integer maths: pair fitness, the z-test threshold schedule, and the ±1 leaf update.

Members 2i and 2i+1 are antithetic partners (same noise, opposite sign). Q-EGGROLL turns each
pair into one small integer fitness fᵢ, accumulates the vote Z = Σᵢ fᵢ · εᵢ over the even
members (ε = the member's unscaled noise), and moves a parameter entry by exactly ±1 where
the vote is significant: a z-test whose threshold comes from a significance level α (docs/int8-spec.md §8).

Everything is int32 as in the reference (x64 off): sums and products wrap mod 2³², which for
populations below ~18 000 members never happens. Only the threshold schedule uses floats
(the normal quantile, via the standard library).

Mirrors: nano-egg run.py QEggRoll.convert_fitnesses, _simple_full_update, _simple_lora_update,
_common_update, and the threshold schedule of run_evolution.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np

from .fixedpoint import FIXED_POINT, MAX, isq
from .intmm import exact_matmul


def wrap32(v) -> np.ndarray:
    """The int64 → int32 cast, modular (two's complement), as the reference's int32 arithmetic."""
    return np.asarray(v).astype(np.int64).astype(np.int32)


# -- fitness ---------------------------------------------------------------------------------------
def fitness_sign(raw_scores) -> np.ndarray:
    """fᵢ = sign(R₂ᵢ − R₂ᵢ₊₁) ∈ {−1, 0, 1} as int8, the fast (and default) fitness.

    raw_scores: (P,) int32, higher is better, P even. Returns (P/2,) int8; ties give 0.
    Integer scores are subtracted in int32 (wrapping), as the reference does. Float scores are
    subtracted in float32, as the reference does with 64-bit mode off, and a NaN difference
    gives 0 (XLA's NaN → int conversion).

    Mirrors: nano-egg run.py QEggRoll.convert_fitnesses (fast_fitness=True).
    """
    raw = np.asarray(raw_scores)
    if np.issubdtype(raw.dtype, np.floating):
        pairs = raw.astype(np.float32).reshape(-1, 2)                   # (P/2, 2) float32
        with np.errstate(invalid="ignore", over="ignore"):
            s = np.sign(pairs[:, 0] - pairs[:, 1])                      # NaN for NaN or inf − inf
        return np.where(np.isnan(s), 0, s).astype(np.int8)
    pairs = _integer_scores(raw).astype(np.int64).reshape(-1, 2)       # (P/2, 2)
    return np.sign(wrap32(pairs[:, 0] - pairs[:, 1])).astype(np.int8)


def _integer_scores(raw: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(raw.dtype, np.integer)):
        raise ValueError(f"raw_scores must be integers (the int32 summed log-likelihoods), got dtype {raw.dtype}")
    return raw


def fitness_normalized(raw_scores) -> np.ndarray:
    """The reference's "normalized difference" fitness, quirks included (docs/int8-spec.md §8.1). (P/2,) int8.

        d = 16 · (R₂ᵢ − R₂ᵢ₊₁)                   int32, wrapping
        ρ = int32(√float32(wrap32(d · d)))        NaN (negative square) → 0
        f = wrap8(⌊16 · d / ρ⌋)                   with x // 0 = −1 if x = 0 else −2

    Meant to be ±16, it is: ±16 for 0 < |diff| ≤ 2896, −1 for ties, and for |diff| ≥ 2897 the
    square overflows int32, giving −2 or an unrelated value. The reference's update crashes on
    this path (NameError in _common_update), so it is provided for fitness parity only.

    Integer scores only: float scores raise ValueError (docs/reference-differences.md).

    Mirrors: nano-egg run.py QEggRoll.convert_fitnesses (fast_fitness=False).
    """
    pairs = _integer_scores(np.asarray(raw_scores)).astype(np.int64).reshape(-1, 2)
    d = wrap32((pairs[:, 0] - pairs[:, 1]) << FIXED_POINT)               # (P/2,) int32
    sq = wrap32(d.astype(np.int64) * d)                                  # wraps past |d| ≥ 46341
    with np.errstate(invalid="ignore"):
        rho = np.sqrt(sq.astype(np.float32))                             # float32, NaN if sq < 0
    rho = np.where(np.isnan(rho), 0, rho).astype(np.int64)               # XLA: NaN → 0 on the cast
    num = wrap32(d.astype(np.int64) << FIXED_POINT).astype(np.int64)     # 16·d, int32 wrapping
    q = np.where(rho == 0, np.where(num == 0, -1, -2), num // np.maximum(rho, 1))
    return wrap32(q).astype(np.int8)                                     # the int8 cast wraps


# -- threshold schedule ----------------------------------------------------------------------------
def alpha_schedule(alpha: float, epochs, decay: int = 1000) -> np.ndarray:
    """Significance level per epoch: α_e = 1 / ((2^α − 1) · e / decay + 1) if α > 1, else α.

    epochs: int or array of epoch numbers. Returns float64 of the same shape.
    """
    e = np.asarray(epochs, dtype=np.float64)
    if alpha > 1.0:
        return 1.0 / ((np.exp2(alpha) - 1.0) * (e / decay) + 1.0)   # same operation order as run.py
    return alpha * np.ones_like(e)


def update_threshold(alpha_t) -> np.ndarray:
    """int32(Φ⁻¹(1 − α_t / 2) · 16), truncated toward zero. α_t = 1 gives 0 (everything moves).

    Φ⁻¹ is ``statistics.NormalDist().inv_cdf`` (it reproduces scipy's ``norm.ppf`` here).
    """
    inv = NormalDist().inv_cdf
    a = np.asarray(alpha_t, dtype=np.float64)
    z = np.array([inv(1.0 - v / 2.0) for v in a.ravel()], dtype=np.float64).reshape(a.shape)
    return (z * (1 << FIXED_POINT)).astype(np.int32)


def threshold_schedule(alpha: float, n_epochs: int, decay: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(α_t, threshold) for epochs 0..n_epochs−1: float64 (E,), int32 (E,). docs/int8-spec.md §8.3."""
    a = alpha_schedule(alpha, np.arange(n_epochs), decay)
    return a, update_threshold(a)


# -- the leaf update -------------------------------------------------------------------------------
def vote_lowrank(fitness, A, B, use_clt: bool) -> np.ndarray:
    """Z = Σᵢ fᵢ Aᵢ Bᵢᵀ (use_clt) or Σᵢ fᵢ sgn(Aᵢ) sgn(Bᵢ)ᵀ, for an MM or EMB leaf. int32 (a, b).

    fitness: (N,) int8 in {−1, 0, 1}. A: (N, a, r) int8, the even (sign +1) members' factors.
    B: (N, b, r) int8. Computed as one exact matmul (a, N·r) @ (N·r, b).
    """
    f = np.asarray(fitness).astype(np.int8)[:, None, None]
    if use_clt:
        fa = f * A                                     # (N, a, r) int8: f ∈ {−1, 0, 1}, no wrap
        b = B
    else:
        fa = f * np.sign(A)
        b = np.sign(B)
    n, a, r = fa.shape
    left = np.transpose(fa, (1, 0, 2)).reshape(a, n * r)     # (a, N·r)
    right = np.transpose(b, (0, 2, 1)).reshape(n * r, -1)    # (N·r, b)
    return wrap32(exact_matmul(left, right))


def vote_full(fitness, E, use_clt: bool) -> np.ndarray:
    """Z = Σᵢ fᵢ Eᵢ (use_clt) or Σᵢ fᵢ sgn(Eᵢ), for a PARAM leaf. E: (N, *S) int32 → (*S) int32."""
    e = np.asarray(E)
    e = e if use_clt else np.sign(e)
    z = exact_matmul(np.asarray(fitness)[None, :], e.reshape(e.shape[0], -1))   # (1, ∏S)
    return wrap32(z).reshape(e.shape[1:])


def threshold_step(param, Z, threshold: int, n_fitness: int, use_clt: bool) -> np.ndarray:
    """Move each entry by ±1 where the vote is significant, then clip (docs/int8-spec.md §8.2).

        τ   = threshold · ⌊√N⌋ · (256 if use_clt else 1)
        new = p                    if 16·|Z| < τ        (strict)
              p + 1 if Z > 0 else p − 1   otherwise      (so with τ ≤ 0 everything moves,
                                                           and Z = 0 moves down)

    param: int8, Z: int32 of the same shape, N = the number of fitness values (pop / 2).
    Returns int8 in [−127, 127].

    Mirrors: nano-egg run.py _common_update (fast_fitness=True).
    """
    tau = wrap32(int(threshold) * isq(n_fitness) * ((4 ** FIXED_POINT) if use_clt else 1))
    z = wrap32(Z)
    keep = wrap32(np.abs(z).astype(np.int64) * (1 << FIXED_POINT)) < tau   # int32 as the reference
    p = np.asarray(param).astype(np.int32)
    moved = np.where(z > 0, p + 1, p - 1)
    return np.clip(np.where(keep, p, moved), -MAX, MAX).astype(np.int8)
