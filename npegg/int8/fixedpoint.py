"""Fixed-point int8 arithmetic: named roundings, the integer layer norm, the gated recurrent cell.

Conventions (docs/int8-spec.md §0–§1). An activation is int8 holding 16 × its real value ("value × 16",
range ±7.94); the GRU state holds 127 × its real value. Every int8 result is clipped to the
*symmetric* range [−127, 127]; −128 is never produced by a clip. Intermediate sums are widened
to int32 first, so nothing wraps unless a function says it does.

Every rounding is a floor. A right shift ``a >> k`` on a signed NumPy integer is arithmetic, so
it already equals ⌊a / 2ᵏ⌋ for negative a (−1 >> 4 = −1, not 0): that is ``floor_shift``.

Mirrors: nano-egg run.py (clipped_add, EGG_LN, EGG_GRU, QEggRoll.init_noiser's DIVISION table).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

FIXED_POINT = 4          # activations and weights hold value × 2⁴
MAX = 127                # symmetric int8 range [−MAX, MAX]
LOGMAX = 7               # the GRU gate divides by 2^(LOGMAX + 1) = 256


# -- named roundings, widenings and saturations ------------------------------------------------------
def widen(x) -> np.ndarray:
    """int8/int16 → int32 before any arithmetic, so that sums and products cannot wrap."""
    return np.asarray(x).astype(np.int32)


def saturate(v) -> np.ndarray:
    """clip(v) = min(127, max(−127, v)) as int8: clip of docs/int8-spec.md §0. The range is symmetric."""
    return np.clip(v, -MAX, MAX).astype(np.int8)


def wrap8(v) -> np.ndarray:
    """The int32 → int8 cast: ((v + 128) mod 256) − 128. It wraps, it does not saturate."""
    return np.asarray(v).astype(np.int8)  # NumPy's integer narrowing is two's-complement truncation


def floor_shift(a, k: int, out=None) -> np.ndarray:
    """⌊a / 2ᵏ⌋ for signed integers (an arithmetic right shift; −1 >> k = −1). ``out``: as NumPy's."""
    return np.right_shift(a, k, out=out)


def floor_div(a, d: int, out=None) -> np.ndarray:
    """⌊a / d⌋ for a positive integer constant d; a plain shift when d is a power of two. ``out``: as NumPy's."""
    d = int(d)
    if d <= 0:
        raise ValueError(f"floor_div needs a positive divisor, got {d}")
    if d & (d - 1) == 0:
        return floor_shift(a, d.bit_length() - 1, out=out)  # identical result, cheaper than a division
    return np.floor_divide(a, d, out=out)


def clipped_add(*terms) -> np.ndarray:
    """int8(clip(a + b + …)): the sum is taken in int32, then clipped once (docs/int8-spec.md §2.1).

    Mirrors: nano-egg run.py clipped_add.
    """
    total = widen(terms[0])
    for t in terms[1:]:
        total = total + widen(t)
    return saturate(total)


def isq(n: int) -> int:
    """⌊√n⌋ as an exact integer; equals the reference's ``int(np.sqrt(n))`` for every size used."""
    return math.isqrt(int(n))


# -- the division semantics of EGG_LN --------------------------------------------------------------
_RECIP_BITS = 32
_RECIP_OFFSET = 1 << 15


def floor_div_small(v, d) -> np.ndarray:
    """⌊v / d⌋ for |v| ≤ 2¹⁵ and 1 ≤ d ≤ 255, by multiplying with a rounded-up reciprocal.

    NumPy's signed ``floor_divide`` is slow (a branch per element); this is three int64 passes.
    Shift to n = v + 2¹⁵·d ≥ 0, so ⌊n/d⌋ = ⌊v/d⌋ + 2¹⁵. With M = ⌈2³²/d⌉ = (2³² + e)/d, e < d:
    n·M/2³² = n/d + n·e/(d·2³²), and n·e < 2²³·2⁸ = 2³¹ < 2³² keeps the excess below 1/d, the
    least gap between a non-integer n/d and the next integer; so ⌊n·M/2³²⌋ = ⌊n/d⌋ exactly
    (n·M < 2⁵⁶ fits int64). Its slow twin, ``np.floor_divide``, agrees on the whole domain (tests).
    v, d: broadcastable integer arrays. Returns int64.
    """
    d = np.asarray(d, dtype=np.int64)
    recip = ((1 << _RECIP_BITS) + d - 1) // d                        # ⌈2³²/d⌉, one per divisor
    n = np.asarray(v, dtype=np.int64) + d * _RECIP_OFFSET            # ≥ 0
    return ((n * recip) >> _RECIP_BITS) - _RECIP_OFFSET


def ln_divide(v, d) -> np.ndarray:
    """DIV[d][v], the layer norm's saturating floor division, by formula (docs/int8-spec.md §2.5).

        d ≥ 1:  clip(⌊v / d⌋)
        d = 0:  −1 if v = 0, else −2      (XLA's division by zero, then jnp's floor fix-up)

    v: integer numerators with |v| ≤ 2¹⁵; d: divisors in [0, 255] broadcastable against v.
    Returns int8 in [−127, 127].
    """
    v = np.asarray(v)
    d = np.asarray(d)
    q = saturate(floor_div_small(v, np.maximum(d, 1)))   # floor, not truncation: −1 // 80 = −1
    if np.any(d == 0):                                   # row 0: rare (Σ|x| < H), so patch it in
        q = np.where(d == 0, np.where(v == 0, -1, -2), q).astype(np.int8)
    return q


def xla_floor_divide(a, b) -> np.ndarray:
    """jnp.floor_divide on signed integers as XLA computes it, including division by zero.

    XLA: q = trunc(a / b), r = a − q·b; for b = 0 it defines q = −1 and r = a. jnp then
    subtracts 1 where sign(a) ≠ sign(b) and r ≠ 0. This is the *construction* the reference
    uses for its table; ``ln_divide`` is the closed form. int64 in, int64 out.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    zero = b == 0
    bb = np.where(zero, 1, b)
    q = np.where(zero, -1, np.sign(a) * np.sign(bb) * (np.abs(a) // np.abs(bb)))  # truncating
    r = np.where(zero, a, a - q * bb)
    return np.where((np.sign(a) != np.sign(b)) & (r != 0), q - 1, q)


def division_table() -> np.ndarray:
    """The reference's DIVISION lookup table, (256, 65536) int8, built the way run.py builds it.

    DIV[row, col] = clip(int16(col) // uint8(row)) with XLA's integer division semantics
    (``xla_floor_divide``). Column ``col`` is the uint16 bit pattern of the int16 numerator.
    16 MiB; the model itself uses ``ln_divide`` instead. This is its slow twin.

    Mirrors: nano-egg run.py QEggRoll.init_noiser (frozen_division).
    """
    cols = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int64)  # (65536,)
    out = np.empty((256, 1 << 16), dtype=np.int8)
    for row in range(256):
        out[row] = saturate(xla_floor_divide(cols, row))
    return out


# -- EGG_LN: the mean-absolute integer layer norm ----------------------------------------------------
def egg_ln(x, w) -> np.ndarray:
    """Integer "layer norm" by the floored mean absolute value (docs/int8-spec.md §2.5).

        m   = ⌊max(Σⱼ |xⱼ|, 1) / H⌋          ∈ [0, 127]
        yⱼ  = DIV[m][xⱼ · wⱼ]                 (``ln_divide``; m = 0 gives −1 / −2)

    No mean subtraction, no bias. x: (..., H) int8, value × 16. w: int8 weight broadcastable
    against x (value × 16; 16 means 1.0). Returns (..., H) int8 in [−127, 127], value × 16.

    Mirrors: nano-egg run.py EGG_LN._forward.
    """
    x = np.asarray(x)
    h = x.shape[-1]
    # np.abs on int8 maps −128 to −128, as jnp.abs does; the model never feeds −128 here.
    abs_sum = widen(np.abs(x)).sum(axis=-1, keepdims=True)  # (..., 1) int32
    m = np.maximum(abs_sum, 1) // h                          # (..., 1) floored mean |x|
    v = widen(x) * widen(w)                                  # (..., H) int32, |v| ≤ 2¹⁴: no int16 wrap
    return ln_divide(v, m)


def egg_ln_by_table(x, w, table: np.ndarray) -> np.ndarray:
    """``egg_ln`` through the lookup table, as the reference does it (the slow twin)."""
    x = np.asarray(x)
    abs_sum = widen(np.abs(x)).sum(axis=-1, keepdims=True)
    m = np.maximum(abs_sum, 1) // x.shape[-1]
    col = (widen(x) * widen(w)).astype(np.int16).view(np.uint16)  # the int16 bit pattern as index
    return table[np.broadcast_to(m, col.shape), col]


# -- EGG_GRU: nano-egg's gated recurrent cell -------------------------------------------------------
def egg_gru(x, state, mm: Callable[[str, np.ndarray], np.ndarray], bf, bh) -> np.ndarray:
    """One step of nano-egg's integer gated recurrent cell (docs/int8-spec.md §2.6); returns the new state.

    An MGU-style variant of minGRU with recurrent matrices: a single forget gate f feeds both
    the reset of the past (gp) and the blend. It is *not* the parallel-scan minGRU of Feng et
    al. ("Were RNNs all we needed?"), whose gates see only the input; here the gate and the
    candidate also see the state through U_f and U_h, so the recurrence is sequential.
    "sigmoid" and "tanh" are the identity in the reference; the gate is mapped affinely:

        f  = clip(Wf x + Uf s + bf)                     gate, int8
        g  = f + 127                                     ∈ [0, 254], the gate × 256
        gp = ⌊g · s / 256⌋                               gated past, fits int8
        c  = clip(Wh x + Uh gp + bh)                     candidate, int8
        s' = s + ⌊g · (c − s) / 256⌋                     new state (and the cell output)

    x: (P, H) int8, value × 16 (the LN output). state: (P, H) int8, value × 127.
    mm(name, v): the scaled, possibly perturbed matmul ``do_mm`` for name in Wf, Uf, Wh, Uh,
    mapping (P, H) int8 → (P, H) int8. bf, bh: int8 biases broadcastable to (P, H).
    Returns (P, H) int8 in [−127, 127] whenever x, state lie in [−127, 127].

    Mirrors: nano-egg run.py EGG_GRU._forward.
    """
    s = widen(state)                                                   # (P, H) int32, value × 127
    f = clipped_add(mm("Wf", x), mm("Uf", state), bf)                  # (P, H) int8, gate
    g = widen(f) + MAX                                                 # (P, H) int32 in [0, 254]
    gated = wrap8(floor_shift(g * s, LOGMAX + 1))                      # (P, H) int8, in [−127, 126]: lossless
    c = widen(clipped_add(mm("Wh", x), mm("Uh", gated), bh))           # (P, H) candidate, value × 127
    # The reference adds an int8-cast blend to the int8 state in int8 arithmetic; both steps wrap
    # mod 256, so the result is wrap8 of the exact sum. For inputs in [−127, 127] the exact sum
    # already lies in [−127, 127] (checked exhaustively), so nothing wraps. Do not saturate here.
    return wrap8(s + floor_shift(g * (c - s), LOGMAX + 1))             # (P, H) int8, value × 127
