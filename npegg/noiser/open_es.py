"""OpenES: full-rank antithetic Gaussian-style ES, the baseline EGGROLL is measured against.

Member n's matrix is ``W_n = W + s · σ · E_n`` with E_n (a, b) full rank, so a population forward
needs every member's own (O, I) matrix: P small matmuls on a materialised (P, O, I) tensor instead
of one shared matmul. The update has the same scale convention as EggRoll::

    G = −√N · (1/N) Σₙ fₙ sₙ σ Eₙ

(PARAM leaves as in EggRoll). Everything else (fitness shaping, optimizer, noise indexing) is
inherited from ``EggRoll``; only how an MM/EMB leaf is perturbed changes: the hooks
``_matmul_noise``, ``_embedding_noise`` and ``_matrix_grad``.

Mirrors: hyperscalees/noiser/open_es.py (OpenES).
"""
from __future__ import annotations

import numpy as np

from .eggroll import EggRoll, get_nonlora_update_params


class OpenES(EggRoll):
    """Full-rank perturbations of matrices; materialises (P, O, I). Overrides EggRoll's three hooks."""

    @classmethod
    def _matmul_noise(cls, frozen, sigma, iterinfo, shape, key, x, transposed):
        """x (s σ Eₙ)ᵀ per member (x (s σ Eₙ) when transposed): P small matmuls on (P, O, I) noise."""
        e = get_nonlora_update_params(frozen, sigma, iterinfo, shape, key)   # (P, a, b)
        p = x.shape[0]
        x3 = x.reshape(p, -1, x.shape[-1])                                  # (P, N, I)
        out = np.matmul(x3, e if transposed else e.transpose(0, 2, 1))      # (P, N, O)
        return out.reshape(x.shape[:-1] + (out.shape[-1],))

    @classmethod
    def _embedding_noise(cls, frozen, sigma, iterinfo, shape, key, tok):
        """Rows s σ Eₙ[t] of every member's full-rank embedding noise: tok (P, N) → (P, N, D)."""
        e = get_nonlora_update_params(frozen, sigma, iterinfo, shape, key)   # (P, V, D)
        return e[np.arange(tok.shape[0])[:, None], tok]

    @classmethod
    def _noise_floats(cls, frozen, kind, shape):
        """Floats of one member's full-rank noise: every entry of the leaf."""
        return int(np.prod(shape))

    @classmethod
    def _matrix_grad(cls, frozen, sigma, info, shape, key, w, rows=None):
        """Σₙ wₙ sₙ σ (mₙ ⊙ Eₙ) for a chunk of members: the full-rank form of EggRoll's hook, (a, b)."""
        e = get_nonlora_update_params(frozen, sigma, info, shape, key)     # (c, a, b)
        if rows is not None:
            e = e * rows[:, :, None]
        return np.tensordot(w, e.astype(w.dtype), axes=(0, 0))
