"""torcheggroll (PyPI, 0.2.0) as a conformance adapter: ``ADAPTER``.

Its real code runs: ``TorchEggrollES`` builds the population (``prepare_population``: base +
noise, stacked), ``apply_fitness_scores`` makes the update, ``compute_es_gradient`` shapes the
fitness. Only its draws are injected: ``torcheggroll.es.torch.randn`` serves the case's unit noise
(``torch_common.RandnFeed``); for a matrix it asks for (I + O, r) and splits it itself (B the
first I rows, A the rest), scales by σ/√r and forms A Bᵀ; for a vector it asks for the shape.

Its conventions, and how the adapter maps them:

- **Pairs (i, i + P/2)**: the first half of its population is +noise, the second −noise. When
  the members are 0..P−1 with P even, the adapter feeds pair k's noise to row k and reads row
  j as member ``half_split_order(P)[j]`` — the port's own antithetic code makes the signs. For
  other member sets (odd P, ids not from 0) it runs with ``antithetic=False`` and the adapter
  applies the sign s = ±1 to the injected A (or E) itself.
- **Rank clamped to the matrix**: it uses r = min(R, O, I) factors and σ/√r. Not mapped: a case
  with R above the matrix's smaller side differs (a known difference; see tests/conformance/
  torcheggroll.xfail and test_ports.py).
- **Fitness**: z-scores with the unbiased std and no 1e-5 (|std| ≤ 1e-8: only centred), no
  groups; the update always centres the fitness it is given (f − f̄).
- Not claimed: ``do_Tmm`` (no transposed layout), optimizers (the update is θ + lr·g only),
  noise derivation (its seeds are Python's ``hash((epoch, i, idx))`` into torch's generator).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

import torcheggroll
import torcheggroll.es as tes

from torch_common import RandnFeed, half_split_order, is_full_pairs, patched, signs, t


def _pop_layout(members):
    """(antithetic?, rows: the members whose noise feeds the port's draws in order, order of its outputs)."""
    p = len(members)
    if is_full_pairs(members):
        return True, np.arange(0, p, 2), half_split_order(p)
    return False, np.arange(p), np.arange(p)


def _lowrank_draws(A, B, members, rows, antithetic):
    """Injected (I + O, r) draws: [B; A] per row, A signed by the adapter when the port's antithetic is off."""
    s = np.ones(len(members), np.float32) if antithetic else signs(members)
    return [np.concatenate([B[i], s[i] * A[i]], axis=0) for i in rows]


def _full_draws(E, members, rows, antithetic):
    s = np.ones(len(members), np.float32) if antithetic else signs(members)
    return [s[i] * E[i] for i in rows]


def _population(model, members, sigma, rank, draws):
    """The port's stacked population params {name: (P, …)}, rows in member order (members' own order)."""
    antithetic, rows, order = _pop_layout(members)
    es = tes.TorchEggrollES(model, pop_size=len(members), sigma=float(sigma), lr=1.0, rank=int(rank),
                            antithetic=antithetic)
    with patched(tes, RandnFeed(draws(rows, antithetic))) as feed:
        es.prepare_population()
    feed.check_used()
    stacked = es.get_stacked_params()
    back = np.argsort(order)                     # port row of each member
    return es, {k: v[t(back)] for k, v in stacked.items()}


class _Vec(nn.Module):
    """A module whose only parameter is a vector p and whose output is p."""

    def __init__(self, p):
        super().__init__()
        self.p = nn.Parameter(t(p).clone())

    def forward(self, x):
        return self.p


class _MLP(nn.Module):
    """Linear layers with relu between them (npegg's MLP with activation='relu'), leaves '<t>/weight'."""

    def __init__(self, params):
        super().__init__()
        n = len([k for k in params if k.endswith("/weight")])
        self.layers = nn.ModuleList()
        for i in range(n):
            w, b = params[f"{i}/weight"], params[f"{i}/bias"]
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(t(w))
                lin.bias.copy_(t(b))
            self.layers.append(lin)

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _forward_each(model, stacked, x):
    names = list(stacked)
    f = vmap(lambda xs, *ps: functional_call(model, dict(zip(names, ps)), (xs,)))
    with torch.no_grad():
        return f(t(x), *stacked.values()).numpy()


def _do_mm(case):
    W, A, B, m = case["W"], case["A"], case["B"], case["members"]
    model = nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(t(W))
    _, stacked = _population(model, m, case["sigma"], A.shape[2], lambda rows, anti: _lowrank_draws(A, B, m, rows, anti))
    return {"y": _forward_each(model, stacked, case["x"])}


def _do_emb(case):
    E, A, B, m = case["E"], case["A"], case["B"], case["members"]
    model = nn.Embedding(E.shape[0], E.shape[1])
    with torch.no_grad():
        model.weight.copy_(t(E))
    # nn.Embedding's weight (V, D) is a matrix to the port: A (V, r) rows, B (D, r): the draw is [B; A]
    _, stacked = _population(model, m, case["sigma"], A.shape[2], lambda rows, anti: _lowrank_draws(A, B, m, rows, anti))
    return {"y": _forward_each(model, stacked, case["tokens"])}


def _noisy_standard(case):
    m = case["members"]
    model = _Vec(case["p"])
    _, stacked = _population(model, m, case["sigma"], 1, lambda rows, anti: _full_draws(case["E"], m, rows, anti))
    return {"y": stacked["p"].detach().numpy()}


def _fitness_zscore(case):
    raw = t(case["raw"])
    if int(case["group_size"]) not in (0, raw.numel()):
        raise ValueError("torcheggroll has no fitness groups")
    p = raw.numel()
    # compute_es_gradient returns √P·mean_n(f_n·noise_n): with noise_n = the n-th unit row scaled by √P
    # it returns f itself (up to the rounding of √P·√P)
    eye = torch.eye(p) * (p ** 0.5)
    return {"f": torcheggroll.compute_es_gradient({"f": eye}, raw, normalize_fitness=True)["f"].numpy()}


def _grad(case, lowrank: bool):
    """G = −(θ' − θ) from the port's update θ' = θ + lr·√P·mean((f − f̄)·noise) at θ = 0, lr = 1."""
    m = case["members"]
    if lowrank:
        A, B = case["A"], case["B"]
        model = nn.Linear(B.shape[1], A.shape[1], bias=False)
        nn.init.zeros_(model.weight)
        rank, draws = A.shape[2], (lambda rows, anti: _lowrank_draws(A, B, m, rows, anti))
    else:
        model, rank = _Vec(np.zeros(case["E"].shape[1], np.float32)), 1
        draws = lambda rows, anti: _full_draws(case["E"], m, rows, anti)
    es, _ = _population(model, m, case["sigma"], rank, draws)
    antithetic, _, order = _pop_layout(m)
    es.normalize_fitness = False                  # the case's fitness is already shaped; the port still centres it
    es.apply_fitness_scores(t(case["fitness"])[t(order)])
    name = "weight" if lowrank else "p"
    return {"G": -es.base_params[name].numpy()}


def _mlp_forward(case):
    params = {k[len("param/"):]: v for k, v in case.items() if k.startswith("param/")}
    m, rank = case["members"], int(case["rank"])
    model = _MLP(params)

    def draws(rows, anti):
        out = []
        for i in range(len(model.layers)):        # named_parameters order: layers.i.weight, layers.i.bias
            out += _lowrank_draws(case[f"A/{i}/weight"], case[f"B/{i}/weight"], m, rows, anti)
            out += _full_draws(case[f"E/{i}/bias"], m, rows, anti)
        return out

    _, stacked = _population(model, m, case["sigma"], rank, draws)   # the port draws parameter by parameter
    x = np.asarray(case["x"])[:, None, :]                               # (P, 1, I): one row per member
    return {"y": _forward_each(model, stacked, x)[:, 0, :]}


_OPS = {"do_mm": _do_mm, "do_emb": _do_emb, "noisy_standard": _noisy_standard, "fitness_zscore": _fitness_zscore,
        "grad_lowrank": lambda c: _grad(c, True), "grad_full": lambda c: _grad(c, False), "mlp_forward": _mlp_forward}


class TorcheggrollAdapter:
    """torcheggroll's TorchEggrollES with injected draws (see the module docstring)."""
    name = "torcheggroll"
    about = f"torcheggroll 0.2.0 (PyPI), torch {torch.__version__}"
    claims = frozenset(_OPS)

    def run(self, op: str, case: dict) -> dict:
        return _OPS[op](case)


ADAPTER = TorcheggrollAdapter()
