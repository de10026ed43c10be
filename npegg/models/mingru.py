"""The minGRU of Feng et al. ("Were RNNs All We Needed?", 2024): gates from the input only.

The cell's gates look only at the input, never at the previous state::

    z_t = σ(W_z x_t + b_z)                   update gate        (P, T, D)
    h̃_t = W_h x_t + b_h                      candidate          (P, T, D)
    h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t    new state = output

so over a chunk of T steps the recurrence is the *linear* recurrence ``h_t = a_t ⊙ h_{t−1} + b_t``
with a_t = 1 − z_t and b_t = z_t ⊙ h̃_t known in advance for every t. The input projections for
all T steps are two matmuls; what is left is T elementwise multiply-adds (``linear_scan_loop``).

The paper's candidate is linear (its "minGRU", §3.1); its log-space variant wraps h̃ in
g(x) = x + ½ (x ≥ 0), σ(x) (x < 0) so that h̃ > 0 and logs exist. npegg works in linear space,
so it needs no positivity and keeps the linear candidate.

**Loop or scan.** Pairs (a, b) compose associatively: applying (a₁, b₁) then (a₂, b₂) is
(a₁a₂, a₂b₁ + b₂). Hillis–Steele doubling (``linear_scan``) applies this for d = 1, 2, 4, … < T::

    b_t ← b_t + a_t ⊙ b_{t−d},   a_t ← a_t ⊙ a_{t−d}        for every t ≥ d, all at once

⌈log₂ T⌉ vectorized passes over (P, T, D) arrays: depth log₂ T instead of T, the form a GPU wants,
but O(T log T) work and memory traffic. On a CPU the T cheap steps of the loop do O(T) work and
win (chapter 6 of the tutorials times both; ``benchmarks`` group ``scan``), so the cell's forward
runs the loop and the scan stays as its parallel twin, checked against it in the tests. Both only
multiply numbers in [0, 1] and add, so nothing can overflow; every h_t is a weighted sum of h₀ and
the h̃ with weights adding up to at most 1, so its rounding error stays a few ulps of
max(|h₀|, max |h̃|) (each step's error is damped by the next a_t ≤ 1).

**Document starts.** A reset before step t (its input byte is 0) is a_t = 0: then h_t = z_t h̃_t,
exactly the step from a zero state, and nothing before t leaks past it.

The cell's ``step`` is the slow twin of its whole-chunk forward; the tests run each against the other.
"""
from __future__ import annotations

import numpy as np

from .. import keys as K
from .common import MM, Model, Parameter, _fits, call_submodule, merge_inits, per_member


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(x) = ½ + ½ tanh(x/2): no exp overflow warning, keeps the dtype. ``out=x`` overwrites x
    (the same operations in the same order, so the same bits, without the three temporaries)."""
    if out is None:
        return 0.5 + 0.5 * np.tanh(0.5 * x)
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def linear_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray | None = None) -> np.ndarray:
    """All states of h_t = a_t ⊙ h_{t−1} + b_t, t = 1..T, by Hillis–Steele doubling.

    After the round with offset d (1, 2, 4, … < T), h_t holds the recurrence over the last 2d
    steps: (A, H)_t ← (a_t a_{t−d}, h_t + a_t h_{t−d}); ⌈log₂ T⌉ rounds of O(P·T·D) work and no
    loop over time. h0 enters as b₁ += a₁ ⊙ h0. a, b: (P, T, D) float with a in [0, 1]; h0:
    (P, D) or None (zeros). Returns h (P, T, D), b's dtype; ``linear_scan_loop`` is its slow twin.
    """
    a = np.array(a, copy=True)                                   # (P, T, D), overwritten in place
    h = np.array(b, copy=True)                                   # (P, T, D)
    if h0 is not None:
        h[:, 0] += a[:, 0] * h0
    T = h.shape[1]
    d = 1
    while d < T:
        h[:, d:] += a[:, d:] * h[:, :-d]   # right side is evaluated into a temporary first
        if 2 * d < T:                      # the last pass never reads a again
            a[:, d:] *= a[:, :-d].copy()
        d *= 2
    return h


def linear_scan_loop(a: np.ndarray, b: np.ndarray, h0: np.ndarray | None = None) -> np.ndarray:
    """h_t = a_t ⊙ h_{t−1} + b_t one step at a time: ``linear_scan``'s arguments and result, and
    on a CPU the faster of the two (module docstring)."""
    h = np.zeros_like(b[:, 0]) if h0 is None else np.asarray(h0, dtype=b.dtype)  # (P, D)
    if a.dtype != b.dtype:                        # a·h would round in a's precision: keep that
        out = np.empty_like(b)
        for t in range(b.shape[1]):
            h = a[:, t] * h + b[:, t]
            out[:, t] = h
        return out
    # Time-major copies (T, P, D): each step then reads and writes contiguous (P, D) blocks, which
    # halves the loop's time against strided slices of (P, T, D); the same two roundings per step,
    # so the same bits.
    a_t, b_t = np.ascontiguousarray(a.transpose(1, 0, 2)), np.ascontiguousarray(b.transpose(1, 0, 2))
    out_t = np.empty_like(b_t)
    for t in range(b.shape[1]):
        h = np.multiply(a_t[t], h, out=out_t[t])
        h += b_t[t]
    return out_t.transpose(1, 0, 2)                                  # (P, T, D), a view of out_t


def _plus(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """y + v, written into y (a fresh matmul result) where that is the same array (``common._fits``)."""
    return np.add(y, v, out=y) if _fits(y, v) else y + v


class MinGRUCell(Model):
    """Feng et al.'s minGRU: gates from the input only, so the chunk is one linear scan.

    Params: Wz, Wh (D, D) MM_PARAM (N(0, 1/D)); bz, bh (D,) PARAM (0).
    ``_forward(cp, x (P, T, D), s (P, D), keep (P, T) or None)`` → (h (P, T, D), h_T (P, D));
    keep[p, t] = 0 resets member p's state before step t.
    """

    @classmethod
    def rand_init(cls, key, dim, dtype="float32", *args, **kwargs):
        kz, kh = K.split(key, 2)
        zeros = np.zeros(dim)
        return merge_inits(Wz=MM.rand_init(kz, dim, dim, dtype), bz=Parameter.rand_init(key, raw_value=zeros, dtype=dtype),
                           Wh=MM.rand_init(kh, dim, dim, dtype), bh=Parameter.rand_init(key, raw_value=zeros, dtype=dtype))

    @classmethod
    def _gates(cls, cp, x):
        """a = 1 − z and b = z ⊙ h̃ for every step: (P, T, D) each."""
        z = _plus(call_submodule(MM, "Wz", cp, x), per_member(call_submodule(Parameter, "bz", cp), 1, x.ndim))
        z = sigmoid(z, out=z)
        h_tilde = _plus(call_submodule(MM, "Wh", cp, x), per_member(call_submodule(Parameter, "bh", cp), 1, x.ndim))
        h_tilde *= z                                                 # b = z ⊙ h̃, in h̃'s buffer
        return 1 - z, h_tilde

    @classmethod
    def _forward(cls, cp, x, s, keep=None, *args, **kwargs):
        a, b = cls._gates(cp, x)                                     # (P, T, D) each
        if keep is not None:
            a *= keep[..., None]                                     # a_t = 0 at document starts
        h = linear_scan_loop(a, b, s)                                # (P, T, D)
        return h, h[:, -1]

    @classmethod
    def step(cls, cp, x_t, s, keep_t=None):
        """One step, the slow twin of ``_forward``: x_t (P, D), s (P, D), keep_t (P,) → s' (P, D)."""
        if keep_t is not None:
            s = s * keep_t[:, None]
        a, b = cls._gates(cp, x_t[:, None])                          # (P, 1, D)
        return a[:, 0] * s + b[:, 0]
