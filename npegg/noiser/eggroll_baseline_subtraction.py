"""EggRollBS: EggRoll with baseline subtraction — two zero-noise members per group are the baseline.

The population is G members, n = 0 … G − 1 (G = ``group_size``). Members with n mod G ∈ {0, 1}
carry no noise at all (every leaf, PARAM leaves included); the others are EggRoll's antithetic
pairs (2q, 2q + 1), so the perturbation of member n is

    εₙ = mₙ · sₙ σ/√r · Aₙ Bₙᵀ        mₙ = [n mod G ≥ 2],  sₙ = ±1 for even/odd n

Each member may be evaluated Q times (episodes, batches). ``convert_fitnesses`` takes the raw
scores as (Q, G), or flat (Q·G,) with raw[q·G + g] the q-th score of member g, and returns one
fitness per member (G,)::

    Z_qg = (S_qg − S_q0) / (std_g(S_q·) + 1e-8)      (member 0's score is the baseline; std over
                                                        the G members, ddof 0, members 0, 1 included)
    Z_q0 = Z_q1 = 0;   f_g = (1/Q) Σ_q Z_qg

The update is EggRoll's estimate with N = G, whose baseline terms are exactly zero::

    G_leaf = −√N · (1/N) Σₙ fₙ εₙ

and the optimizer is ``chain(clip_by_global_norm(trust_region_norm), solver)``: the estimate is
scaled down to global norm ``trust_region_norm`` (default 1) before the solver sees it.

Expectation: for a raw (unshaped) fitness fₙ = F(W + εₙ) − F(W), E[G] = −(N − 2)/√N · σ² ∇F
for a linear or quadratic F (the two baseline members add nothing; EggRoll's is −√N σ² ∇F).
The z-scoring by the group's standard deviation makes the shaped estimate a ratio, whose
expectation is not a fixed multiple of ∇F; the tests check the unshaped estimate.

In ``npegg.es.ES`` each member is evaluated once: ``pop_size`` = ``group_size`` (Q = 1).

Mirrors: hyperscalees/noiser/eggroll_baseline_subtraction.py (EggRollBS).
"""
from __future__ import annotations

import numpy as np

from .. import fitness as F
from .. import optim
from .eggroll import EggRoll, eggroll_keywords


class EggRollBS(EggRoll):
    """EggRoll whose members 0 and 1 of each group are unperturbed baselines; fitness is each
    member's score minus member 0's, over the group's standard deviation, averaged over Q repeats;
    the estimate is clipped to a global norm before the optimizer."""

    @classmethod
    @eggroll_keywords
    def init_noiser(cls, params, sigma, lr, *args, solver=None, solver_kwargs=None, group_size=0,
                    trust_region_norm=1.0, **kwargs):
        """EggRoll's settings, plus: group_size G ≥ 3 (required: members 0 and 1 of a group are
        the baseline), trust_region_norm > 0 (the clip before the solver)."""
        if not (isinstance(group_size, (int, np.integer)) and group_size >= 3):
            raise ValueError(f"group_size must be an integer >= 3 for EggRollBS (members 0 and 1 of each group "
                             f"are the zero-noise baseline), got {group_size!r}")
        if kwargs.get("fitness", "zscore") != "zscore":
            raise ValueError(f"fitness: EggRollBS shapes its scores itself (baseline subtraction); "
                             f"got fitness={kwargs['fitness']!r}")
        frozen, noiser_params = super().init_noiser(params, sigma, lr, *args, solver=solver,
                                                    solver_kwargs=solver_kwargs, group_size=group_size, **kwargs)
        clip = optim.clip_by_global_norm(trust_region_norm)
        solver = optim.chain(clip, frozen["solver"])
        frozen = {**frozen, "solver": solver, "baseline_group": int(group_size),
                  "trust_region_norm": float(trust_region_norm)}
        return frozen, {**noiser_params, "opt_state": solver.init(params)}

    @classmethod
    def convert_fitnesses(cls, frozen_noiser_params, noiser_params, raw_scores, num_episodes_list=None):
        """f (G,) from raw scores (Q, G) or (Q·G,): Z = (S − S[:, 0]) / (std(S, axis 1) + 1e-8),
        Z[:, 0] = Z[:, 1] = 0, f = mean over Q (float64). ``num_episodes_list`` is ignored."""
        g = frozen_noiser_params["group_size"]
        raw = np.asarray(raw_scores)
        if raw.ndim == 1:
            if raw.size == 0 or raw.size % g:
                raise ValueError(f"raw_scores: {raw.size} scores are not a whole number of groups of {g} members")
            s = raw.reshape(-1, g)
        elif raw.ndim == 2 and raw.shape[1] == g:
            s = raw
        else:
            raise ValueError(f"raw_scores must be (Q·G,) or (Q, G) with G = group_size = {g}, got shape {raw.shape}")
        s = F.check_finite(s.ravel(), frozen_noiser_params["nan_policy"]).astype(np.float64).reshape(s.shape)
        z = (s - s[:, :1]) / (np.std(s, axis=1, keepdims=True) + 1e-8)   # (Q, G)
        z[:, :2] = 0.0
        return z.mean(axis=0)                                             # (G,)
