"""Fitness shaping: raw scores (P,) → fitnesses (P,), as pure functions with one signature.

Every shaper takes ``raw`` (P,) and returns float (P,); higher raw score is better. Antithetic
members 2k and 2k+1 are adjacent. Shapers:

- ``zscore(raw, group_size=0)``: the reference's normalisation.
  group_size = 0:  f = (R − mean R) / √(var R + 1e-5)
  group_size = g:  f_n = (R_n − mean of n's group) / √(var R + 1e-5)
  where groups are g consecutive members and var is the population variance of *all* of R (the
  mean is per group but the variance is global; a reference quirk, kept for parity). Any g that
  divides P is computed, as the reference does; an odd g (or an odd P) separates antithetic
  partners, which is announced by an ``AntitheticSplitWarning`` and computed all the same.
- ``centered_ranks(raw)``: rank(R) / (P − 1) − 0.5 ∈ [−0.5, 0.5] (OpenAI ES); ties get the mean of
  their ranks so equal scores get equal fitness.
- ``pair_sign(raw)``: f_{2k} = sign(R_{2k} − R_{2k+1}), f_{2k+1} = −f_{2k}: only which member of
  each antithetic pair won. With antithetic noise Σ f ε = 2 Σ_k sign(d_k) ε_{2k}.

Non-finite scores (NaN, ±inf) follow ``nan_policy``:

- "raise" (default): ``ValueError`` naming how many and which members, before any update.
- "worst": every non-finite score is replaced by the lowest finite score, so a diverged member
  is ranked last and never rewarded. If no score is finite this raises too.

Mirrors: EggRoll.convert_fitnesses (zscore); evosax/OpenAI ES centered ranks.
"""
from __future__ import annotations

import warnings

import numpy as np

NAN_POLICIES = ("raise", "worst")


class AntitheticSplitWarning(UserWarning):
    """A population or group size that separates antithetic partners 2k, 2k+1.

    The numbers are the reference's; only the variance reduction of antithetic pairs is lost
    (a partner is centred on another group's mean, or has no partner). Python's default filter
    shows it once per call site and message; ``warnings.simplefilter("error",
    AntitheticSplitWarning)`` turns it into an error.
    """


def check_finite(raw, nan_policy: str = "raise") -> np.ndarray:
    """Apply the non-finite policy; returns a finite float array (P,)."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise ValueError(f"raw_scores must be 1-D (P,), got shape {raw.shape}")
    if not np.issubdtype(raw.dtype, np.floating):
        raw = raw.astype(np.float64)
    bad = ~np.isfinite(raw)
    if not bad.any():
        return raw
    if nan_policy == "raise" or bad.all():
        idx = np.flatnonzero(bad)
        raise ValueError(f"raw_scores has {idx.size} non-finite value(s) (members {idx[:8].tolist()}"
                         f"{'…' if idx.size > 8 else ''}); fix the objective or pass nan_policy='worst'")
    out = raw.copy()
    out[bad] = raw[~bad].min()
    return out


def check_population(pop: int, group_size: int = 0, antithetic: bool = True) -> None:
    """Validate population and group size: groups must tile P; with ``antithetic`` (the strict check
    of programs that train, such as ``npegg train``) P and the group size must also be even, so
    that partners 2k, 2k+1 always share a group. The oracle functions use ``check_groups``."""
    if pop < 1:
        raise ValueError(f"population size must be >= 1, got {pop}")
    if antithetic and pop % 2:
        raise ValueError(f"population size must be even for antithetic sampling (pairs 2k, 2k+1), got {pop}")
    if group_size < 0:
        raise ValueError(f"group_size must be 0 (one group) or a positive divisor of the population, got {group_size}")
    if group_size and pop % group_size:
        raise ValueError(f"group_size {group_size} does not divide the population size {pop}")
    if group_size and antithetic and group_size % 2:
        raise ValueError(f"group_size must be even so antithetic pairs share a group, got {group_size}")


def check_groups(pop: int, group_size: int = 0) -> None:
    """What the reference computes: P ≥ 1 and group_size 0 or a positive divisor of P.

    Raises ValueError otherwise (the reference's reshape fails too). Warns once per call with
    ``AntitheticSplitWarning`` when an odd P leaves member P − 1 without its partner or an odd
    group size puts partners 2k, 2k+1 in different groups.
    """
    check_population(pop, group_size, antithetic=False)
    split = []
    if pop % 2:
        split.append(f"the population {pop} is odd, so member {pop - 1} has no antithetic partner")
    if group_size % 2:
        split.append(f"group_size {group_size} is odd, so some antithetic pairs (2k, 2k+1) straddle two groups")
    if split:
        warnings.warn("; ".join(split) + ": computed as the reference does, without the antithetic "
                      "variance reduction", AntitheticSplitWarning, stacklevel=3)


def zscore(raw, group_size: int = 0, nan_policy: str = "raise") -> np.ndarray:
    """Reference z-score: per-group mean, global population variance, +1e-5.

    f_n = (R_n − mean of n's group) / √(var R + 1e-5), groups of g consecutive members (one group
    when g = 0), var over all P; any g dividing P, odd ones with an AntitheticSplitWarning.
    """
    r = check_finite(raw, nan_policy)
    check_groups(r.size, group_size)
    if r.dtype.itemsize < 4:       # float16: a spread over ~256 overflows its variance (max 65504) to inf
        r = r.astype(np.float32)
    denom = np.sqrt(r.var() + r.dtype.type(1e-5))
    if group_size == 0:
        return (r - r.mean()) / denom
    g = r.reshape(-1, group_size)  # (P/g, g)
    return ((g - g.mean(axis=1, keepdims=True)) / denom).ravel()


def centered_ranks(raw, nan_policy: str = "raise") -> np.ndarray:
    """f_n = rank(R_n) / (P − 1) − 0.5 ∈ [−0.5, 0.5], ranks 0..P−1; tied scores share their mean rank.

    raw: (P,) numbers, higher is better (non-finite ones per ``nan_policy``). Returns (P,)
    float64; P = 1 gives [0]. The OpenAI-ES shaping: invariant to any increasing map of R.
    """
    r = check_finite(raw, nan_policy)
    n = r.size
    if n == 1:
        return np.zeros(1)
    order = np.argsort(r, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    # average ranks within ties
    _, inv, counts = np.unique(r, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = sums[inv] / counts[inv]
    return ranks / (n - 1) - 0.5


def pair_sign(raw, nan_policy: str = "raise") -> np.ndarray:
    """f_{2k} = sign(R_{2k} − R_{2k+1}), f_{2k+1} = −f_{2k}: which member of each antithetic pair won.

    raw: (P,) numbers, P even (partners 2k, 2k+1 adjacent). Returns (P,) in {−1, 0, 1}, raw's
    dtype. With antithetic noise ε_{2k+1} = −ε_{2k}, Σ f ε = 2 Σ_k sign(R_{2k} − R_{2k+1}) ε_{2k}.
    """
    r = check_finite(raw, nan_policy)
    check_population(r.size)
    s = np.sign(r[0::2] - r[1::2])  # (P/2,)
    return np.stack([s, -s], axis=1).ravel()


SHAPERS = {"zscore": zscore, "centered_ranks": centered_ranks, "pair_sign": pair_sign}


def shape_fitness(raw, method: str = "zscore", group_size: int = 0, nan_policy: str = "raise"):
    """Dispatch to a shaper by name; ``group_size`` only applies to z-scores."""
    if method not in SHAPERS:
        raise ValueError(f"fitness method must be one of {sorted(SHAPERS)}, got {method!r}")
    if method == "zscore":
        return zscore(raw, group_size, nan_policy)
    return SHAPERS[method](raw, nan_policy)
