"""eggroll-trainer (PyPI, 0.1.0; Python ≥ 3.12) as a conformance adapter: ``ADAPTER``.

Its real code runs: ``EGGROLLTrainer._apply_perturbations`` (one member's perturbed parameters),
``_convert_fitnesses`` and ``_compute_lora_update`` / ``_compute_full_update`` (the update, scaled
by lr·√P as its ``step`` does). Only its draws are injected. It draws from one generator that it
re-seeds per member with key = (epoch // noise_reuse)·10⁶ + thread // 2 (antithetic, noise_reuse
≥ 1) or epoch·10⁶ + thread (noise_reuse 0, no antithetic), then asks ``torch.randn`` for
(I + O)·r values (B the first I·r, row-major (I, r); A the next O·r) or for a vector's shape.
The adapter replaces the generator by ``_KeyedGenerator``, which remembers the key, and serves
each key's *stream* (``KeyedFeed``): a call for n values gets the first n of it — exactly what a
re-seeded generator does, which is why every parameter of a member gets the same noise.

Conventions and mapping: when the members are 0..P−1 with P even it runs with noise_reuse = 1 (its
antithetic pairs are (2k, 2k + 1), as npegg's) and thread = member; otherwise noise_reuse = 0 and
the adapter signs the injected A (or E) itself. Its z-score uses the unbiased std + 1e-8 and,
with groups, each group's own std. A whole model's members share one noise stream (claimed as
``mlp_forward``: the port cannot give its parameters independent noise, so it differs). Its
``step`` builds each member from the previous member's perturbed weights: see
tests/conformance/test_ports.py (the forward inside ``step``), not a level-(i) operation.
Not claimed: ``do_Tmm``, ``do_emb`` (no embedding handling beyond a 2-D matrix), optimizers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import eggroll_trainer
import eggroll_trainer.eggroll as etr

from torch_common import is_full_pairs, patched, signs, t


class _KeyedGenerator:
    """Stands in for the trainer's torch.Generator: remembers the last manual_seed key."""
    key = None

    def manual_seed(self, key):
        self.key = int(key)
        return self


class KeyedFeed:
    """A ``torch`` stand-in whose ``randn`` returns the first n values of the current key's stream."""

    def __init__(self, streams: dict):
        self.streams = streams

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, *size, generator=None, device=None, dtype=None, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        n = int(np.prod(shape))
        stream = self.streams[generator.key]
        if stream.size < n:
            raise AssertionError(f"the port drew {n} values for key {generator.key}; {stream.size} injected")
        return torch.from_numpy(np.ascontiguousarray(stream[:n].reshape(shape))).to(dtype or torch.float32)


class _Vec(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = nn.Parameter(t(p).clone())

    def forward(self, x):
        return self.p


def _trainer(model, members, sigma, rank, group_size=0):
    antithetic = is_full_pairs(members)
    tr = etr.EGGROLLTrainer(model.parameters(), model, lambda m: 0.0, population_size=len(members),
                            learning_rate=1.0, sigma=float(sigma), rank=int(rank),
                            noise_reuse=1 if antithetic else 0, group_size=int(group_size))
    tr.rng = _KeyedGenerator()
    return tr, antithetic


def _streams(members, antithetic, pieces):
    """{key: stream} for epoch 0: ``pieces(i, s)`` is member i's stream (s: the sign to apply, or 1)."""
    s = np.ones(len(members), np.float32) if antithetic else signs(members)
    if antithetic:   # key = thread // 2: partners share it (and their noise)
        return {int(members[i]) // 2: pieces(i, 1.0) for i in range(0, len(members), 2)}
    return {int(members[i]): pieces(i, s[i]) for i in range(len(members))}


def _lowrank_piece(A, B):
    return lambda i, s: np.concatenate([B[i].ravel(), (s * A[i]).ravel()]).astype(np.float32)


def _threads(members, antithetic):
    return np.arange(len(members)) if antithetic else np.asarray(members)


def _perturbed(model, tr, members, antithetic, streams):
    """Each member's perturbed parameters {name: (P, …)} from the port's ``_apply_perturbations`` at the base."""
    out = {}
    with patched(etr, KeyedFeed(streams)):
        for th in _threads(members, antithetic):
            for name, v in tr._apply_perturbations(int(th), 0).items():
                out.setdefault(name, []).append(v.detach().numpy())
    return {k: np.stack(v) for k, v in out.items()}


def _do_mm(case):
    W, A, B, m = case["W"], case["A"], case["B"], case["members"]
    model = nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(t(W))
    tr, anti = _trainer(model, m, case["sigma"], A.shape[2])
    w = _perturbed(model, tr, m, anti, _streams(m, anti, _lowrank_piece(A, B)))["weight"]        # (P, O, I)
    with torch.no_grad():
        y = torch.einsum("pni,poi->pno", t(case["x"]), t(w))        # what nn.Linear computes per member
    return {"y": y.numpy()}


def _noisy_standard(case):
    m, E = case["members"], case["E"]
    model = _Vec(case["p"])
    tr, anti = _trainer(model, m, case["sigma"], 1)
    return {"y": _perturbed(model, tr, m, anti, _streams(m, anti, lambda i, s: (s * E[i]).astype(np.float32)))["p"]}


def _fitness_zscore(case):
    raw = t(case["raw"])
    tr, _ = _trainer(_Vec(np.zeros(1, np.float32)), np.arange(raw.numel()), 1.0, 1, case["group_size"])
    return {"f": tr._convert_fitnesses(raw).numpy()}


def _grad(case, lowrank: bool):
    """G = −lr·√P·update (the port's step adds that to θ), lr = 1."""
    m, f = case["members"], case["fitness"]
    if lowrank:
        A, B = case["A"], case["B"]
        model = nn.Linear(B.shape[1], A.shape[1], bias=False)
        tr, anti = _trainer(model, m, case["sigma"], A.shape[2])
        piece = _lowrank_piece(A, B)
    else:
        E = case["E"]
        model = _Vec(np.zeros(E.shape[1], np.float32))
        tr, anti = _trainer(model, m, case["sigma"], 1)
        piece = lambda i, s: (s * E[i]).astype(np.float32)
    if not anti:    # the update loops over threads 0..P−1: give thread k member k's noise
        tr.noise_reuse = 0
        s = signs(m)
        streams = {k: piece(k, s[k]) for k in range(len(m))}
    else:
        streams = _streams(m, anti, piece)
    param = next(model.parameters())
    with patched(etr, KeyedFeed(streams)), torch.no_grad():
        u = (tr._compute_lora_update if lowrank else tr._compute_full_update)(param, t(f), 0)
        scale = tr.learning_rate * (tr.population_size ** 0.5)
        return {"G": (-(scale * u)).numpy()}


def _mlp_forward(case):
    params = {k[len("param/"):]: v for k, v in case.items() if k.startswith("param/")}
    m = case["members"]
    n = len([k for k in params if k.endswith("/weight")])
    layers = []
    for i in range(n):
        w, b = params[f"{i}/weight"], params[f"{i}/bias"]
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(t(w))
            lin.bias.copy_(t(b))
        layers += [lin, nn.ReLU()] if i < n - 1 else [lin]
    model = nn.Sequential(*layers)
    tr, anti = _trainer(model, m, case["sigma"], case["rank"])

    def piece(j, s):   # the member's noise for every leaf, in parameter order, as one stream
        parts = []
        for i in range(n):
            parts += [case[f"B/{i}/weight"][j].ravel(), s * case[f"A/{i}/weight"][j].ravel(), s * case[f"E/{i}/bias"][j]]
        return np.concatenate(parts).astype(np.float32)

    pert = _perturbed(model, tr, m, anti, _streams(m, anti, piece))
    ys = []
    for j in range(len(m)):
        with torch.no_grad():
            y = torch.func.functional_call(model, {k: t(v[j]) for k, v in pert.items()}, (t(case["x"][j:j + 1]),))
        ys.append(y.numpy()[0])
    return {"y": np.stack(ys)}


_OPS = {"do_mm": _do_mm, "noisy_standard": _noisy_standard, "fitness_zscore": _fitness_zscore,
        "grad_lowrank": lambda c: _grad(c, True), "grad_full": lambda c: _grad(c, False), "mlp_forward": _mlp_forward}


class EggrollTrainerAdapter:
    """eggroll-trainer's EGGROLLTrainer with injected draws (see the module docstring)."""
    name = "eggroll-trainer"
    about = f"eggroll-trainer {eggroll_trainer.__version__} (PyPI), torch {torch.__version__}"
    claims = frozenset(_OPS)

    def run(self, op: str, case: dict) -> dict:
        return _OPS[op](case)


ADAPTER = EggrollTrainerAdapter()
