"""OpenES: full-rank antithetic Gaussian-style ES, the baseline EGGROLL is measured against.

Member n's matrix is ``W_n = W + s · σ · E_n`` with E_n (a, b) full rank, so a population forward
needs every member's own (O, I) matrix: P small matmuls on a materialised (P, O, I) tensor instead
of one shared matmul. The update has the same scale convention as EggRoll::

    G = −√N · (1/N) Σₙ fₙ sₙ σ Eₙ

(PARAM leaves as in EggRoll). Everything else (fitness shaping, optimizer, noise indexing) is
inherited from ``EggRoll``; only how an MM/EMB leaf is perturbed changes.

Mirrors: hyperscalees/noiser/open_es.py (OpenES).
"""
from __future__ import annotations

import numpy as np

from .eggroll import EggRoll, _shared_matmul, get_nonlora_update_params


class OpenES(EggRoll):
    """Full-rank perturbations of matrices; materialises (P, O, I)."""

    @classmethod
    def do_mm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """x (W + s σ E)ᵀ per member; W (O, I), x (P, …, I) → (P, …, O)."""
        base = _shared_matmul(x, param.T)
        if iterinfo is None:
            return base
        e = get_nonlora_update_params(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape, base_key)
        p = x.shape[0]
        x3 = x.reshape(p, -1, x.shape[-1])                                  # (P, N, I)
        return base + np.matmul(x3, e.transpose(0, 2, 1)).reshape(base.shape)  # (P, N, I) @ (P, I, O)

    @classmethod
    def do_Tmm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """x (W + s σ E) per member; W (I, O), x (P, …, I) → (P, …, O)."""
        base = _shared_matmul(x, param)
        if iterinfo is None:
            return base
        e = get_nonlora_update_params(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape, base_key)
        p = x.shape[0]
        return base + np.matmul(x.reshape(p, -1, x.shape[-1]), e).reshape(base.shape)

    @classmethod
    def do_emb(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, tokens):
        """(E + s σ Eₙ)[t] per member; tokens (P, …) → (P, …, D)."""
        tokens = np.asarray(tokens)
        base = param[tokens]
        if iterinfo is None:
            return base
        e = get_nonlora_update_params(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape, base_key)
        p = tokens.shape[0]
        rows = e[np.arange(p)[:, None], tokens.reshape(p, -1)]              # (P, N, D)
        return base + rows.reshape(base.shape)

    @classmethod
    def _noise_floats(cls, frozen, kind, shape):
        """Floats of one member's full-rank noise: every entry of the leaf."""
        return int(np.prod(shape))

    @classmethod
    def _matrix_grad(cls, frozen, sigma, info, shape, key, w):
        """Σₙ wₙ sₙ σ Eₙ for a chunk of members: the full-rank form of EggRoll's hook, (a, b)."""
        e = get_nonlora_update_params(frozen, sigma, info, shape, key)     # (c, a, b)
        return np.tensordot(w, e.astype(w.dtype), axes=(0, 0))
