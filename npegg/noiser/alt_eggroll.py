"""AltEggRoll: EggRoll's perturbations, an update built from the *signs* of the low-rank factors.

The forward is EggRoll's (member n uses W + sₙ σ/√r · Aₙ Bₙᵀ). Only the update of MM/EMB leaves
changes: each member's term uses sign(Aₙ) sign(Bₙ)ᵀ, a matrix of ±1 sums, in place of Aₙ Bₙᵀ::

    G = −√N · (1/N) Σₙ fₙ · sₙ σ/√r · sign(Aₙ) sign(Bₙ)ᵀ        (MM and EMB leaves)

PARAM leaves (full-rank noise) and everything else are EggRoll's. (sign 0 where a factor entry is
exactly 0, as ``jnp.sign``; npegg's table has such entries, t = 0 when the byte sum is 1020.)

**The bias, derived.** Let a, b be independent, symmetric, unit-variance entries with
μ₁ = E|a| (√(2/π) ≈ 0.798 for a Gaussian; for npegg's Irwin–Hall table, ``first_absolute_moment``).
For a linear fitness F(W) = ⟨C, W⟩ with raw fitnesses fₙ = F(Wₙ), the unperturbed part ⟨C, W⟩
cancels inside each antithetic pair, and for entry (i, j) of one member's term

    E[ sₙ σ/√r ⟨C, Aₙ Bₙᵀ⟩ · sₙ σ/√r Σₖ sign(A_ik) sign(B_jk) ]
      = σ²/r Σₖ Σ_{p,q} C_pq E[A_pk sign(A_ik)] E[B_qk sign(B_jk)] = σ²/r · r · μ₁² C_ij,

since E[A_pk sign(A_ik')] = μ₁ when (p, k) = (i, k') and 0 otherwise. EggRoll's term has E[A_pk A_ik']
= δ in its place, giving σ² C. So

    E[G_alt] = μ₁² · E[G_eggroll] = −√N σ² μ₁² ∇F,

the right direction shrunk by μ₁² (2/π ≈ 0.637 for Gaussian noise), at every rank. The same holds
exactly for a quadratic F (its second-order term is even in (A, B) and cancels in each pair) and
up to O(σ⁴) for a smooth one. Shaped fitnesses (z-scores) are nonlinear in the noise, so there
the factor is approximate. ``tests/noiser/test_other_noisers.py`` measures it.

Mirrors: hyperscalees/noiser/alteggroll.py (its class EggRoll; ``_simple_lora_update`` is
``AltEggRoll._update_factors`` + EggRoll's ``_matrix_grad``).
"""
from __future__ import annotations

import numpy as np

from ..noise import TABLE_SCALE
from .eggroll import EggRoll, unit_lora


def first_absolute_moment() -> float:
    """μ₁ = E|t| of npegg's table noise t = (S − 1020)·C, S a sum of 8 uniform bytes, exactly
    from the distribution of S (8-fold convolution of the uniform on 0…255); float64."""
    p = np.ones(256) / 256
    dist = np.array([1.0])
    for _ in range(8):
        dist = np.convolve(dist, p)                                      # (2041,) P(S = s)
    s = np.arange(dist.size)
    return float(np.sum(dist * np.abs(s - 1020)) * float(TABLE_SCALE))


class AltEggRoll(EggRoll):
    """EggRoll with the update from sign-quantised factors: Σₙ fₙ sₙ σ/√r sign(Aₙ) sign(Bₙ)ᵀ
    (biased by the factor μ₁², derived in the module docstring). Overrides one hook."""

    @classmethod
    def _update_factors(cls, frozen, sigma, info, shape, key):
        """(sign(A) (c, a, R), sign(B) (c, b, R), s·σ/√r (c,)), in the noise's dtype."""
        a, b, scale = unit_lora(frozen, sigma, info, shape, key)
        return np.sign(a), np.sign(b), scale

    @classmethod
    def _factors_shared_by_pairs(cls) -> bool:
        """The signs of partners' shared unit factors are shared too, and the scale is unit_lora's:
        the update may sum partners' weights first (``EggRoll._combines_pairs``)."""
        return cls._update_factors.__func__ is AltEggRoll._update_factors.__func__
