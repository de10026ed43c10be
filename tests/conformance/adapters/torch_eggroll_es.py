"""eggroll-es (PyPI, 0.2.0; the ``eggroll`` package) as a conformance adapter: ``ADAPTER``.

Its real code runs: ``eggroll.core.evolve_step`` (the update from given perturbations and
fitnesses) and ``eggroll.core.fitness_shaping``. Its noiser cannot take injected low-rank noise:
``LowRankNoiser`` draws, for every parameter of D entries, A and B of shape (D, r) and uses the
*elementwise* σ·Σₖ A_dk B_dk / r — a full-rank perturbation whatever r is, with variance σ²/r per
entry, not the rank-r matrix σ/√r·A Bᵀ (tests/conformance/test_ports.py shows both). So the
forward operations are not claimed (statistical conformance covers them); the update is, since
``evolve_step`` takes the perturbations as given: the adapter hands it member n's perturbation
s·σ/√R·AₙBₙᵀ (or s·σ·Eₙ) and reads the update.

Its scale: θ' = θ + lr·(1/(Nσ))·Σₙ shaped(fₙ)·perturbationₙ (the textbook estimate of the
gradient, times lr). npegg's G = −(1/√N)·Σₙ fₙ·perturbationₙ, so with θ = 0, shaping "raw" and
lr = σ·√N the port's θ' is −G. Its shapings: "normalized" (unbiased std + 1e-8) is claimed as
``fitness_zscore``, "centered_rank" (ranks from argsort: tied scores get distinct ranks) as
``fitness_centered_ranks``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import eggroll
import eggroll.core as ec

from torch_common import signs, t


def _config(sigma, n, shaping="raw"):
    return ec.EggrollConfig(population_size=n, sigma=float(sigma), lr=float(sigma) * math.sqrt(n), device="cpu",
                            fitness_shaping=shaping, antithetic=True)


def _grad(case, lowrank: bool):
    m, f, sigma = case["members"], case["fitness"], float(case["sigma"])
    s = signs(m)
    if lowrank:
        A, B = case["A"], case["B"]
        r = A.shape[2]
        pert = [t(np.float32(s[i] * sigma / math.sqrt(r)) * A[i]) @ t(B[i]).T for i in range(len(m))]
        shape = (A.shape[1], B.shape[1])
    else:
        E = case["E"]
        pert = [t(E[i]) * float(s[i] * sigma) for i in range(len(m))]
        shape = (E.shape[1],)
    params = {"w": torch.zeros(shape)}
    out = ec.evolve_step(params, [{"w": p} for p in pert], t(f), _config(sigma, len(m)))
    return {"G": (-out["w"]).numpy()}


def _shaping(case, method):
    return {"f": ec.fitness_shaping(t(case["raw"]), method).numpy()}


def _fitness_zscore(case):
    if int(case["group_size"]) not in (0, len(case["raw"])):
        raise ValueError("eggroll-es has no fitness groups")
    return _shaping(case, "normalized")


_OPS = {"grad_lowrank": lambda c: _grad(c, True), "grad_full": lambda c: _grad(c, False),
        "fitness_zscore": _fitness_zscore, "fitness_centered_ranks": lambda c: _shaping(c, "centered_rank")}


class EggrollEsAdapter:
    """eggroll-es's evolve_step and fitness_shaping (see the module docstring)."""
    name = "eggroll-es"
    about = f"eggroll-es {eggroll.__version__} (PyPI), torch {torch.__version__}"
    claims = frozenset(_OPS)

    def run(self, op: str, case: dict) -> dict:
        return _OPS[op](case)


ADAPTER = EggrollEsAdapter()
