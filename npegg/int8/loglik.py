"""The integer log-likelihood: EXP2 table, LOG2 without the gigabyte table, and ``int_ll``.

Logits are int8 and probabilities are ∝ 2^(logit/16); the log-likelihood is an int32 in units
of 1/16 bit, so bits per byte = −ll / 16 (docs/int8-spec.md §5):

    l'  = logit + 128                          ∈ [1, 255]
    Σ   = Σᵥ EXP2[l'ᵥ]                          EXP2[j] = ⌊16 · 2^(j/16)⌋
    ll  = l'[target] − LOG2[Σ − 1]             LOG2[i] = trunc(16 · log2((i + 1) / 16))

The reference tabulates LOG2 for i < 2²⁸ (1 GiB). For s = i + 1 ≥ 16 the entry is
⌊16 · log2 s⌋ − 64, and ⌊16 · log2 s⌋ is the number of thresholds Tₖ = ⌈2^(k/16)⌉ (k ≥ 0) that
are ≤ s, minus one. So 464 exact integers and a ``searchsorted`` give every entry. The
reference's gather clamps an index past the table end to the last entry, which matters for
vocabularies V ≥ 268; ``log2_entry`` clamps the same way.

Mirrors: nano-egg run.py get_int_ll, EXP2TABLE, LOG2TABLE.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

FBIT = 4
LOG2_TABLE_SIZE = 1 << 28        # the reference's LOG2TABLE length; indices clamp to its end
N_THRESHOLDS = 464               # T₄₆₃ = ⌈2^(463/16)⌉ > 2²⁸ ≥ any s that reaches the table


def iroot16(n: int) -> int:
    """⌊n^(1/16)⌋ for a non-negative Python int, exactly (⌊√⌊√y⌋⌋ = ⌊y^(1/4)⌋, four times)."""
    for _ in range(4):
        n = math.isqrt(n)
    return n


@lru_cache(maxsize=None)
def exp2_table() -> np.ndarray:
    """EXP2[j] = max{n : n¹⁶ ≤ 2^(64+j)} = ⌊16 · 2^(j/16)⌋ for j in 0..255, exact. (256,) int32."""
    t = np.array([iroot16(1 << (64 + j)) for j in range(256)], dtype=np.int32)
    t.flags.writeable = False
    return t


def exp2_table_float() -> np.ndarray:
    """The reference's construction of EXP2 in float64, truncated (the twin of ``exp2_table``)."""
    return (np.exp2(np.arange(256) / (1 << FBIT)) * (1 << FBIT)).astype(np.int32)


@lru_cache(maxsize=None)
def log2_thresholds() -> np.ndarray:
    """Tₖ = ⌈2^(k/16)⌉, the least integer s with s¹⁶ ≥ 2ᵏ, for k = 0..463. (464,) int64."""
    out = []
    for k in range(N_THRESHOLDS):
        r = iroot16(1 << k)
        out.append(r if r ** 16 == 1 << k else r + 1)
    t = np.array(out, dtype=np.int64)
    t.flags.writeable = False
    return t


def floor_16log2(s) -> np.ndarray:
    """⌊16 · log2 s⌋ for integers 1 ≤ s < 2^(463/16), exactly: #{k : Tₖ ≤ s} − 1. int32."""
    return (np.searchsorted(log2_thresholds(), np.asarray(s, dtype=np.int64), side="right") - 1).astype(np.int32)


def log2_entry(index) -> np.ndarray:
    """LOG2[index] = trunc(16 · log2((index + 1) / 16)) for any index ≥ 0, int32.

    Indices ≥ 2²⁸ clamp to the last entry (LOG2[2²⁸ − 1] = 384), as the reference's gather does.
    For s = index + 1 < 16 the value is negative and truncation rounds it up, so it is
    ⌊16 log2 s⌋ − 64 plus one unless s is a power of two. (Unreachable from ``int_ll``: every
    term of Σ is ≥ 16.)
    """
    s = np.minimum(np.asarray(index, dtype=np.int64), LOG2_TABLE_SIZE - 1) + 1
    k = floor_16log2(s)                                          # ⌊16·log2 s⌋
    exact = (s & (s - 1)) == 0                                   # 16·log2 s is an integer iff s = 2ⁿ
    return (k - 64 + ((s < 16) & ~exact)).astype(np.int32)


def log2_entry_float(index) -> np.ndarray:
    """The reference's float64 formula for LOG2[index] (the twin of ``log2_entry``)."""
    i = np.asarray(index, dtype=np.int64)
    return (np.log2((i + 1) / (1 << FBIT)) * (1 << FBIT)).astype(np.int32)


def exp2_sum(logits) -> np.ndarray:
    """Σᵥ EXP2[logitᵥ + 128] over the last axis. logits (..., V) int8 → (...) int64."""
    return exp2_table()[np.asarray(logits).astype(np.int32) + 128].sum(axis=-1, dtype=np.int64)


def int_ll(logits, target) -> np.ndarray:
    """Integer log2-likelihood of ``target`` under int8 logits, in units of 1/16 bit (≤ 0).

    logits: (..., V) int8 in [−127, 127]. target: (...) integer in [0, V). Returns (...) int32.
    For V = 256, ll ∈ [−381, 0]. A target outside [0, V), or a logit outside the int8 range,
    raises ValueError (the reference would clamp the index; docs/reference-differences.md).

    Mirrors: nano-egg run.py get_int_ll.
    """
    logits = np.asarray(logits)
    if logits.dtype != np.int8 and not (np.issubdtype(logits.dtype, np.integer) and logits.size
                                        and -128 <= int(logits.min()) and int(logits.max()) <= 127):
        raise ValueError(f"logits must be int8 values in [-128, 127], got dtype {logits.dtype}"
                         + (f" with values in [{logits.min()}, {logits.max()}]" if logits.size else ""))
    target = np.asarray(target)
    v = logits.shape[-1]
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target must be integer ids in [0, {v}), got dtype {target.dtype}")
    if target.size and (int(target.min()) < 0 or int(target.max()) >= v):
        raise ValueError(f"target must lie in [0, {v}) (the number of logits), got values in "
                         f"[{int(target.min())}, {int(target.max())}]")
    lp = logits.astype(np.int32) + 128                                       # (..., V) in [1, 255]
    total = exp2_table()[lp].sum(axis=-1, dtype=np.int64)                    # (...) Σ, ≥ 16·V
    lse = log2_entry(total - 1)                                              # (...) clamps at 2²⁸ − 1
    tgt = np.take_along_axis(lp, np.asarray(target)[..., None].astype(np.intp), axis=-1)[..., 0]
    return (tgt - lse).astype(np.int32)


def int_ll_columns(lp, target) -> np.ndarray:
    """``int_ll`` of shifted logits l' = logit + 128 laid out one column per row of data, for
    speed: (V, N) → (N,) int32.

        ll = l'[target] − LOG2[Σᵥ EXP2[l'ᵥ] − 1]

    The same formula as ``int_ll``, without its checks (the caller's logits are clipped).
    Σᵥ EXP2[l'ᵥ] is summed down the columns in int32: every entry is below 2²⁰ (EXP2[255] =
    1 004 113), so the sum of V ≤ 2138 entries stays below 2³¹; wider vocabularies sum in int64.
    lp: (V, N) intp in [1, 255]. target: (N,) integers in [0, V).
    """
    table = exp2_table()
    # mode="wrap" only selects np.take's fast path; every index is already in range
    terms = np.take(table, lp, mode="wrap")                                 # (V, N) int32
    wide = lp.shape[0] * int(table[-1]) >= 1 << 31
    total = np.add.reduce(terms, axis=0, dtype=np.int64 if wide else np.int32).astype(np.int64)   # (N,) Σ
    tgt = lp[np.asarray(target), np.arange(lp.shape[1])]                    # (N,) l'[target]
    # every EXP2 entry is ≥ 16, so Σ ≥ 16 and LOG2[Σ − 1] = ⌊16·log2 Σ⌋ − 64 (``log2_entry``), clamped
    lse = floor_16log2(np.minimum(total, LOG2_TABLE_SIZE)) - 64
    return (tgt - lse).astype(np.int32)
