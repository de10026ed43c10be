"""Exact integer matmuls at BLAS speed, and the int8 parameter accesses (do_mm, do_emb, standard).

NumPy's integer ``matmul`` does not call BLAS and is several times slower than float32 BLAS.
But a float matmul of integers is *exact* when every partial sum is an exactly representable
integer: float32 holds every integer of magnitude ≤ 2²⁴, float64 every one ≤ 2⁵³. Each product
xⱼ·Wⱼₖ and each partial sum over any subset of j (BLAS may add in any order, and may fuse
multiply-adds) is bounded in magnitude by

    K · max|x| · max|W|          (K = the contracted length)

so if that bound is < 2²⁴ the float32 result is the exact integer, and likewise for float64
with 2⁵³. Otherwise ``exact_matmul`` falls back to int64 (exact below 2⁶³).

For the EGG model with int8 operands, K · 127 · 127 < 2²⁴ holds up to K = 1040, so every matmul
of nano-egg's sizes (K ≤ 1024) runs in float32. At H = 256 this makes the whole population
forward ~14× faster than with NumPy's int64 matmul (benchmarks/int8_forward.py).

The per-member low-rank terms ((x B) Aᵀ, rank R = 1 or 2) are small products, not matmuls:
they stay in int32 (``outer_sum``), exact by the bound of docs/int8-spec.md §2.2.

The three parameter accesses below are pure functions of already-*signed* noise: the noiser
(``npegg.noiser.qeggroll``) fetches the factors and applies the antithetic sign.
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import FIXED_POINT, floor_div, floor_shift, isq, saturate, widen

F32_EXACT = 1 << 24   # every integer n with |n| ≤ 2²⁴ is a float32
F64_EXACT = 1 << 53   # every integer n with |n| ≤ 2⁵³ is a float64


def max_abs(a) -> int:
    """max |a| as a Python int (no int8 wrap of −128)."""
    a = np.asarray(a)
    if a.size == 0:
        return 0
    return max(-int(a.min()), int(a.max()), 0)


def exact_dtype(k: int, max_a: int, max_b: int):
    """The cheapest dtype in which a length-k integer dot product is provably exact.

    bound = k · max|a| · max|b| bounds every partial sum: float32 if bound < 2²⁴, float64 if
    bound < 2⁵³, else int64.
    """
    bound = int(k) * int(max_a) * int(max_b)
    if bound < F32_EXACT:
        return np.float32
    if bound < F64_EXACT:
        return np.float64
    return np.int64


def exact_matmul(a, b, out_dtype=np.int64) -> np.ndarray:
    """``a @ b`` for integer arrays, exactly, through float BLAS where the bound allows.

    a: (..., M, K) or (K,), b: (..., K, N) or (K,), any integer dtypes; NumPy matmul
    broadcasting. Returns the exact integer product as ``out_dtype`` (the caller guarantees it
    fits; int64 by default).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype == b.dtype == np.int8 and a.shape[-1] * 128 * 128 < F32_EXACT:
        dt = np.float32                                   # the dtype alone proves the bound: no scan
    else:
        dt = exact_dtype(a.shape[-1], max_abs(a), max_abs(b))
    if dt is np.int64:
        return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(out_dtype, copy=False)
    # Exact by the bound above: float products and partial sums are integers below 2^24 (2^53).
    return np.matmul(a.astype(dt), b.astype(dt)).astype(out_dtype)


# -- do_mm -----------------------------------------------------------------------------------------
def mm_divisor(in_dim: int) -> int:
    """16 · ⌊√in⌋: the matmul's fixed-point rescale (not 16·√in, not a power of two in general)."""
    return (1 << FIXED_POINT) * isq(in_dim)


def rescale_mm(acc, in_dim: int) -> np.ndarray:
    """int8(clip(⌊acc / (16 · ⌊√in⌋)⌋)): int32 accumulator → int8 activation, value × 16."""
    return saturate(floor_div(acc, mm_divisor(in_dim)))  # floor, not truncation: −1 // 80 = −1


def outer_sum(u, A) -> np.ndarray:
    """Σᵣ u[..., r] ⊗ A[..., r]: per member, (P, M, R) × (P, O, R) → (P, M, O) int32.

    R is tiny (1 in nano-egg), so this is R broadcast products; no float, no BLAS needed.
    """
    a = widen(A)                                                     # (P, O, R) int32
    out = u[:, :, None, 0] * a[:, None, :, 0]
    for r in range(1, a.shape[-1]):
        out += u[:, :, None, r] * a[:, None, :, r]
    return out


def lowrank_term(x, A, B, sigma_shift: int) -> np.ndarray:
    """⌊((x B) Aᵀ) / 2^(4+σ)⌋ per member: the perturbation of a scaled matmul (docs/int8-spec.md §2.2).

    x: (P, M, I) int8; B: (P, I, R) int8; A: (P, O, R) int8, signed. Returns (P, M, O) int32.
    Exact in int32: |x B Aᵀ| ≤ R·86·86·127·I < 2³¹ for table entries |t| ≤ 86 and I ≤ 1024.
    """
    u = np.einsum("pmi,pir->pmr", widen(x), widen(B))        # (P, M, R) int32, exact
    return floor_shift(outer_sum(u, A), FIXED_POINT + int(sigma_shift))   # floored on its own


def do_mm(W, x, A=None, B=None, sigma_shift: int = 0) -> np.ndarray:
    """The scaled int8 matmul y = clip(⌊(x Wᵀ + ⌊x B Aᵀ / 2^(4+σ)⌋) / (16·⌊√I⌋)⌋).

    W: (O, I) int8, value × 16 (and an implicit 1/√I). x: (P, ..., I) int8, value × 16.
    A: (P, O, R) int8 signed factors and B: (P, I, R) int8, or both None (unperturbed; then x
    may have any leading axes). Returns (P, ..., O) int8 in [−127, 127], value × 16.

    Mirrors: nano-egg run.py QEggRoll.do_mm (semantics: docs/int8-spec.md §2.2).
    """
    W = np.asarray(W)
    x = np.asarray(x)
    o, i = W.shape
    acc = exact_matmul(x, W.T, np.int32)                      # (P, ..., O) int32, |acc| ≤ I·127·127 < 2³¹
    if A is not None:
        p = x.shape[0]
        xm = x.reshape(p, -1, i)                              # (P, M, I)
        acc = acc + lowrank_term(xm, A, B, sigma_shift).reshape(acc.shape)
    return rescale_mm(acc, i)


def do_mm_dense(W, x, A=None, B=None, sigma_shift: int = 0) -> np.ndarray:
    """The slow twin of ``do_mm``: materialise each member's perturbed product, int64 einsum.

    Same arguments and result. Uses ⌊⌊y⌋ / D⌋ = ⌊y / D⌋ to apply one combined floor:
        y = ⌊(x Wᵀ · 2^(4+σ) + x (B Aᵀ)) / (16·⌊√I⌋ · 2^(4+σ))⌋.
    """
    W = np.asarray(W).astype(np.int64)
    x = np.asarray(x).astype(np.int64)
    i = W.shape[1]
    if A is None:
        return saturate(np.floor_divide(np.einsum("...i,oi->...o", x, W), mm_divisor(i)))
    s = 1 << (FIXED_POINT + int(sigma_shift))
    delta = np.einsum("por,pir->poi", A.astype(np.int64), B.astype(np.int64))   # (P, O, I) = A Bᵀ
    w_p = W[None] * s + delta                                                   # (P, O, I)
    xm = x.reshape(x.shape[0], -1, i)
    y = np.einsum("pmi,poi->pmo", xm, w_p)
    return saturate(np.floor_divide(y, mm_divisor(i) * s)).reshape(x.shape[:-1] + (W.shape[0],))


# -- do_emb ----------------------------------------------------------------------------------------
def check_tokens(tokens, vocab: int, name: str = "tokens") -> np.ndarray:
    """Refuse byte/token ids outside [0, vocab) before any work; returns ``tokens`` as an array.

    The reference reads a clamped row instead (JAX clamps out-of-range gathers): an id past the
    vocabulary is a caller's bug, so npegg raises (docs/reference-differences.md, int8 path).
    """
    t = np.asarray(tokens)
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name} must be integer ids in [0, {vocab}), got dtype {t.dtype}")
    if t.size and (int(t.min()) < 0 or int(t.max()) >= vocab):
        raise ValueError(f"{name} must lie in [0, {vocab}) (the vocabulary), got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    return t


def do_emb(E, tokens, A=None, B=None, sigma_shift: int = 0) -> np.ndarray:
    """Embedding lookup y = E[t], perturbed: clip(E[t] + ⌊A[t] Bᵀ / 2^(4+σ)⌋) (docs/int8-spec.md §2.3).

    E: (V, H) int8, value × 16. tokens: (P, ...) integer. A: (P, V, R) int8 signed, B:
    (P, H, R) int8, or None. Returns (P, ..., H) int8. Tokens outside [0, V) raise ValueError. ⚠ Unperturbed, the row is returned as
    stored, without a clip (a stored −128 would pass through; init and updates never make one).

    Mirrors: nano-egg run.py QEggRoll.do_emb.
    """
    E = np.asarray(E)
    tokens = check_tokens(tokens, E.shape[0])
    if A is None:
        return E[tokens]
    p = tokens.shape[0]
    t = tokens.reshape(p, -1)                                      # (P, M)
    a_rows = widen(np.take_along_axis(A, t[:, :, None], axis=1))   # (P, M, R): A[t]
    delta = outer_sum(a_rows, B)                                   # (P, M, H) int32, A[t] Bᵀ
    y = widen(E[t]) + floor_shift(delta, FIXED_POINT + int(sigma_shift))
    return saturate(y).reshape(tokens.shape + (E.shape[1],))


# -- get_noisy_standard ----------------------------------------------------------------------------
def get_noisy_standard(param, E=None, sigma_shift: int = 0) -> np.ndarray:
    """A non-matmul parameter (LN weight, bias), perturbed: clip(p + ⌊E / 2^(4+σ)⌋) (docs/int8-spec.md §2.4).

    param: (*S) int8. E: (P, *S) int32 signed full-rank noise, or None (then ``param`` is
    returned as is). Returns (P, *S) int8. ⚠ The floor makes an antithetic pair asymmetric:
    a small −e becomes −1 where +e becomes 0.

    Mirrors: nano-egg run.py QEggRoll.get_noisy_standard.
    """
    if E is None:
        return param
    return saturate(widen(param)[None] + floor_shift(np.asarray(E, dtype=np.int32), FIXED_POINT + int(sigma_shift)))
