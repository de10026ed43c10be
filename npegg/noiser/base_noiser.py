"""The Noiser interface: how every parameter access is (or is not) perturbed, and how updates are made.

A noiser is a class of pure functions (classmethods; no instance state). Its configuration lives
in two dicts returned by ``init_noiser``: ``frozen_noiser_params`` (settings that never change:
rank, group size, noise source, optimizer) and ``noiser_params`` (what changes: sigma, the
optimizer state). Methods that change state return the new state.

Calling conventions (P = population, the leading axis):

- ``iterinfo`` is ``None`` (plain evaluation: inputs have any leading batch axes) or
  ``(epoch, members)`` with ``members`` a (P,) integer array of member ids; then every input has
  a leading P axis and row p is computed with the parameters perturbed for ``members[p]``.
- ``do_mm(…, param W (O, I), base_key, iterinfo, x (P, …, I)) -> (P, …, O)``: x Wᵀ.
- ``do_Tmm(…, param W (I, O), …, x (P, …, I)) -> (P, …, O)``: x W.
- ``do_emb(…, param E (V, D), …, tokens (P, …) int) -> (P, …, D)``: E[tokens].
- ``get_noisy_standard(…, param, base_key, iterinfo) -> param`` unperturbed, or
  (P, *param.shape) perturbed.
- ``convert_fitnesses(frozen, noiser_params, raw_scores (P,)) -> (P,)``.
- ``do_updates(frozen, noiser_params, params, base_keys, fitnesses, iterinfos, es_map)
  -> (noiser_params, params)``.

This base class perturbs nothing and never updates: it is the plain model.

Mirrors: hyperscalees/noiser/base_noiser.py (Noiser).
"""
from __future__ import annotations

import numpy as np


class Noiser:
    """No perturbation, no update."""

    @classmethod
    def init_noiser(cls, params, sigma=0.0, lr=0.0, *args, solver=None, solver_kwargs=None, **kwargs):
        """(frozen_noiser_params, noiser_params) for ``params``: here ({}, {})."""
        return {}, {}

    @classmethod
    def do_mm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """y = x Wᵀ: W (O, I), x (…, I) → (…, O)."""
        return x @ param.T

    @classmethod
    def do_Tmm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """y = x W: W (I, O), x (…, I) → (…, O)."""
        return x @ param

    @classmethod
    def do_emb(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, tokens):
        """y = E[tokens]: E (V, D), tokens (…) int → (…, D)."""
        return param[np.asarray(tokens)]

    @classmethod
    def get_noisy_standard(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """The parameter itself (a bias, a norm weight), unperturbed."""
        return param

    @classmethod
    def lowrank_factors(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """(A (P, a, r), B (P, b, r), scale (P,)) when this noiser's perturbed matmul and embedding
        are exactly ``x Wᵀ + scale·(x B) Aᵀ`` and ``E[t] + scale·A[t] Bᵀ`` (W, E of shape (a, b)), so
        that a model may fold the rank-r term into a matmul of its own; None otherwise (here)."""
        return None

    @classmethod
    def convert_fitnesses(cls, frozen_noiser_params, noiser_params, raw_scores):
        """f = raw scores (P,), unchanged."""
        return raw_scores

    @classmethod
    def do_updates(cls, frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map):
        """(noiser_params, params) unchanged: the plain model never learns."""
        return noiser_params, params
