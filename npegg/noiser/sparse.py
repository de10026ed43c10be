"""Sparse: each member perturbs k = max(a, b) random entries of every (a, b) matrix.

Member n's perturbation of a matrix W (a, b) is k scaled unit values at k positions drawn
uniformly with replacement (a position drawn twice gets both values)::

    Eₙ = Σ_{j<k} vₙⱼ · e_{iₙⱼ} e_{lₙⱼ}ᵀ,     Wₙ = W + sₙ σ · Eₙ          (sₙ = ±1 for even/odd n)

so a forward adds, per member, k products x[l]·v into outputs i (``do_mm``: y = x Wᵀ + sσ x Eₙᵀ;
``do_Tmm`` for W (I, O): y = x W + sσ x Eₙ; ``do_emb``: E[t] + sσ Eₙ[t]). PARAM leaves get
EggRoll's dense noise. The update, as the reference's, carries the density q = k/(a·b)::

    G = −√N · (1/N) Σₙ fₙ sₙ σ Eₙ · q                 (MM and EMB leaves)

**Expectation.** With E[v] = 0, E[v²] = 1 and positions uniform, for a linear F,
E[⟨C, Eₙ⟩ Eₙ] = Σⱼ E[vⱼ²] E[C_{pos j} 1{pos j = (p, q)}] = (k/(a·b)) C, so
E[G] = −√N σ² q² ∇F: the gradient's direction, at q² times EggRoll's scale (the reference's
comment "to be verified: normalize by the proportion of non-zero elements"; dividing by q instead
of multiplying would give EggRoll's scale). The same holds exactly for a quadratic F (the
second-order term is odd in v and cancels in each antithetic pair).

**Noise.** Values: npegg's table (the slice of k entries that ``full`` gives for shape (k,));
positions: pos = ⌊u · a·b⌋ with u = h / 2³², h = threefry2x32(fold_in(fold_in(key, te), n >> 1),
(0, j))[0] (``npegg.keys``; te as in ``npegg.noise``); i = pos div b, l = pos mod b. A noise source
with a ``sparse(key, epoch, members, shape, k, noise_reuse) -> (v (P, k), i (P, k), l (P, k))``
method (e.g. the tests' injected one) is used instead.

Mirrors: hyperscalees/noiser/sparse.py (Sparse; ``get_sparse_update_params``,
``_simple_sparse_update``). The reference's ``do_mm`` is right for one input vector only (it
indexes x's first axis) and its ``do_Tmm`` swaps the two index sets (y[i] += v·x[l], right only
for a square W, and then it adds x Eᵀ, not x E): npegg computes x Eₙᵀ and x Eₙ for any batch.
"""
from __future__ import annotations

import numpy as np

from .. import keys as K
from ..noise import parse_iterinfo
from ..models.base_model import PARAM
from .eggroll import EggRoll, eggroll_keywords, member_signs


def hashed_positions(key, epoch: int, members, noise_reuse: int, shape, k: int):
    """Rows i (P, k) and columns l (P, k), int64, of each member's k entries (module docstring)."""
    a, b = shape
    te = 0 if noise_reuse == 0 else int(epoch) // int(noise_reuse)
    pair_keys = K.fold_in(K.fold_in(np.asarray(key, np.uint32), te), np.asarray(members) >> 1)  # (P, 2)
    h, _ = K.threefry2x32(pair_keys[:, None, :], np.zeros(k, np.uint32), np.arange(k, dtype=np.uint32))  # (P, k)
    pos = (h.astype(np.uint64) * np.uint64(a * b)) >> np.uint64(32)                            # ⌊u · a·b⌋
    pos = pos.astype(np.int64)
    return pos // b, pos % b


def sparse_update_params(frozen, sigma, iterinfo, shape, key):
    """Each member's scaled values s·σ·v (P, k) and their rows i (P, k), columns l (P, k)."""
    epoch, members = parse_iterinfo(*iterinfo)
    k = max(shape)
    noise = frozen["noise"]
    if hasattr(noise, "sparse"):
        v, i, l = noise.sparse(key, epoch, members, shape, k, frozen["noise_reuse"])
    else:
        v = noise.full(key, epoch, members, (k,), frozen["noise_reuse"])                       # (P, k)
        i, l = hashed_positions(key, epoch, members, frozen["noise_reuse"], shape, k)
    scale = member_signs(frozen, members) * np.float32(sigma)
    return v * scale[:, None], np.asarray(i), np.asarray(l)


def materialise(vals, rows, cols, shape, dtype=None):
    """Dense (P, a, b) perturbations Σⱼ vals[p, j] e_{rows[p, j]} e_{cols[p, j]}ᵀ (repeats add)."""
    p = vals.shape[0]
    out = np.zeros((p,) + tuple(shape), dtype or vals.dtype)
    np.add.at(out, (np.arange(p)[:, None], rows, cols), vals)
    return out


class Sparse(EggRoll):
    """k = max(a, b) random entries per member and matrix; the update is scaled by q = k/(a·b).
    Overrides EggRoll's perturbation hooks, as OpenES does."""

    @classmethod
    @eggroll_keywords
    def init_noiser(cls, params, sigma, lr, *args, rank=1, q_multiplier=1, **kwargs):
        """EggRoll's settings. ``rank`` and ``q_multiplier`` are accepted as the reference does and
        must stay 1: the reference never uses them, so another value would be silently ignored."""
        for name, value in (("rank", rank), ("q_multiplier", q_multiplier)):
            if value != 1:
                raise ValueError(f"{name} must be 1 for Sparse (the reference accepts it and never uses it), got {value!r}")
        return super().init_noiser(params, sigma, lr, *args, rank=1, **kwargs)

    @classmethod
    def _matmul_noise(cls, frozen, sigma, iterinfo, shape, key, x, transposed):
        """sσ x Eₙᵀ (x Eₙ when transposed) per member: gather x at the entries' input index, scale,
        scatter-add at their output index; x (P, …, I) → (P, …, O)."""
        vals, rows, cols = sparse_update_params(frozen, sigma, iterinfo, shape, key)
        src, dst, out_dim = (rows, cols, shape[1]) if transposed else (cols, rows, shape[0])
        p = x.shape[0]
        x3 = x.reshape(p, -1, x.shape[-1])                                     # (P, N, I)
        pidx = np.arange(p)[:, None]
        contrib = x3[pidx, :, src] * vals[:, :, None].astype(x3.dtype)         # (P, k, N)
        out = np.zeros((p, out_dim, x3.shape[1]), contrib.dtype)               # (P, O, N)
        np.add.at(out, (pidx, dst), contrib)
        return out.transpose(0, 2, 1).reshape(x.shape[:-1] + (out_dim,))

    @classmethod
    def _embedding_noise(cls, frozen, sigma, iterinfo, shape, key, tok):
        """Rows sσ Eₙ[t] of each member's sparse perturbation: tok (P, N) → (P, N, D)."""
        vals, rows, cols = sparse_update_params(frozen, sigma, iterinfo, shape, key)
        dense = materialise(vals, rows, cols, shape)                           # (P, V, D)
        return dense[np.arange(tok.shape[0])[:, None], tok]

    @classmethod
    def _noise_floats(cls, frozen, kind, shape):
        """Numbers per member: the dense PARAM noise, or k values and 2k positions."""
        if kind == PARAM:
            return int(np.prod(shape))
        return 3 * max(shape)

    @classmethod
    def _matrix_grad(cls, frozen, sigma, info, shape, key, w, rows=None):
        """q · Σₙ wₙ sₙ σ (mₙ ⊙ Eₙ) over a chunk of members, (a, b), q = k/(a·b); ``rows`` (c, a)
        bool leaves out the entries in rows member n never read."""
        vals, r, c = sparse_update_params(frozen, sigma, info, shape, key)
        weighted = vals.astype(w.dtype) * w[:, None]                           # (c, k)
        if rows is not None:
            weighted = weighted * rows[np.arange(r.shape[0])[:, None], r]
        acc = np.zeros(shape, w.dtype)
        np.add.at(acc, (r, c), weighted)
        return acc * (max(shape) / (shape[0] * shape[1]))
