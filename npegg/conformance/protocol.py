"""The adapter protocol: how an implementation of EGGROLL plugs into the conformance kit.

An **adapter** is any object with three attributes::

    name: str                      # the row label in reports and docs/conformance.md
    claims: Collection[str]        # the operations it implements (keys of OPERATIONS)
    run(op: str, case: dict) -> dict

``run`` receives one **case**: a flat dict of NumPy arrays and Python scalars whose keys are
the operation's inputs (``OPERATIONS[op].inputs``), and returns a flat dict of NumPy arrays
with (at least) the operation's outputs (``OPERATIONS[op].outputs``). The kit never calls
``run`` for an operation the adapter does not claim, and reports it as *not claimed*, never
as passed. An optional ``about: str`` (versions, commit) is printed beside the name.

Conventions shared by every operation (the reference's, and npegg's):

- P is the population (axis 0 of every per-member array), members are thread ids; member n has
  the antithetic sign s = +1 for even n, −1 for odd n, and partners 2k, 2k+1 share their noise.
- **Injected noise.** Level-(i) and level-(iii) cases carry *unit* noise, one row per member:
  low-rank factors ``A`` (P, a, R) and ``B`` (P, b, R) for a matrix W (a, b), full-rank ``E``
  (P, *shape) for a vector. The adapter applies the sign and the scale itself:
  the perturbation of W is s·σ/√R · A Bᵀ, of a vector p it is s·σ·E. An adapter whose code
  draws its own noise must be made to use these arrays (a hook, a monkeypatch of its noise
  function); if it cannot, it does not claim the operation (and the statistical tests apply).
- Layouts: a matmul weight W is (O, I) (y = x Wᵀ) for ``do_mm``; (I, O) (y = x W) for
  ``do_Tmm``; an embedding is (V, D). Float inputs are float32, int8 inputs int8.
- Whole models (level iii) are given as ``param/<path>`` leaves (paths as ``npegg.tree``:
  '/'-joined dict keys in sorted order, the reference's flatten order) with their noise as
  ``A/<path>``, ``B/<path>`` or ``E/<path>``; stacked layers add an axis after P.
- The update estimate handed to the optimizer is the reference's G = −√N·(1/N)·Σₙ fₙ·(member n's
  scaled perturbation) (``npegg.noiser.eggroll``): the optimizer *minimises*, so −lr·G climbs.

Every operation's inputs, outputs and formula are in ``OPERATIONS`` below (``python -m
npegg.conformance --list`` prints them). Names here are stable: adapters are written against them.

Mirrors: array-api-tests' "name your module" design; the names of the operations are the
reference's (hyperscalees/noiser/eggroll.py, nano-egg run.py) where it has one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Collection, Protocol, runtime_checkable

#: level numbers, as the issue and the docs name them
LEVELS = {1: "primitives with injected noise", 2: "noise derivation", 3: "whole steps"}

#: the statuses a (implementation, operation) cell can have in a report or on the scoreboard
EXACT, WITHIN, STAT_EQUIV, DIFFERS, NOT_CLAIMED, KNOWN = (
    "exact", "within tolerance", "statistically equivalent", "differs", "not claimed", "known difference")


@runtime_checkable
class Adapter(Protocol):
    """What the kit needs from an implementation (see the module docstring)."""
    name: str
    claims: Collection[str]

    def run(self, op: str, case: dict) -> dict: ...


@dataclass(frozen=True)
class Operation:
    """One checked operation: its level, formula, inputs and outputs (name → meaning, shape, dtype),
    and whether outputs must be bit-identical (``exact``) or within a derived float bound."""
    name: str
    level: int
    formula: str
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    exact: bool = False


def _op(name, level, formula, inputs, outputs, exact=False):
    return name, Operation(name, level, formula, inputs, outputs, exact)


_NOISE = {"members": "(P,) int64 member ids (sign +1 even, −1 odd)", "sigma": "float σ > 0"}
_LOWRANK_NOISE = {**_NOISE, "A": "(P, a, R) float32 unit factor (output side)",
                  "B": "(P, b, R) float32 unit factor (input side)"}
_OPT = {"p0": "(D,) float32 initial parameters", "grads": "(K, D) float32 the gradient of each step",
        "lrs": "(K,) float64 learning rate of each step (a schedule, sampled)"}

OPERATIONS: dict[str, Operation] = dict([
    # -- level 1: primitives with injected noise ------------------------------------------------------
    _op("do_mm", 1, "y = x Wᵀ + s·σ/√R · (x B) Aᵀ per member",
        {"W": "(O, I) float32", "x": "(P, N, I) float32", **_LOWRANK_NOISE}, {"y": "(P, N, O) float32"}),
    _op("do_Tmm", 1, "y = x W + s·σ/√R · (x A) Bᵀ per member (A (P, I, R), B (P, O, R))",
        {"W": "(I, O) float32", "x": "(P, N, I) float32", **_LOWRANK_NOISE}, {"y": "(P, N, O) float32"}),
    _op("do_emb", 1, "y = E[t] + s·σ/√R · A[t] Bᵀ per member (A (P, V, R), B (P, D, R))",
        {"E": "(V, D) float32", "tokens": "(P, N) int64 in [0, V)", **_LOWRANK_NOISE}, {"y": "(P, N, D) float32"}),
    _op("noisy_standard", 1, "y = p + s·σ·E per member (PARAM noise, full rank)",
        {"p": "(D,) float32", "E": "(P, D) float32 unit noise", **_NOISE}, {"y": "(P, D) float32"}),
    _op("fitness_zscore", 1, "f = (R − mean of R's group) / √(var of all R + 1e-5); group_size 0: one group",
        {"raw": "(P,) float32", "group_size": "int, 0 or a divisor of P"}, {"f": "(P,) float"}),
    _op("fitness_centered_ranks", 1, "f = rank(R)/(P − 1) − 0.5, ties share their mean rank",
        {"raw": "(P,) float32"}, {"f": "(P,) float"}),
    _op("fitness_pair_sign", 1, "f_2k = sign(R_2k − R_2k+1), f_2k+1 = −f_2k",
        {"raw": "(P,) float32, P even"}, {"f": "(P,) float"}, exact=True),
    _op("grad_lowrank", 1, "G = −(1/√N) Σₙ fₙ sₙ σ/√R Aₙ Bₙᵀ (an MM leaf's update estimate)",
        {"fitness": "(N,) float32", **_LOWRANK_NOISE}, {"G": "(a, b) float32"}),
    _op("grad_full", 1, "G = −(1/√N) Σₙ fₙ sₙ σ Eₙ (a PARAM leaf's update estimate)",
        {"fitness": "(N,) float32", "E": "(N, D) float32 unit noise", **_NOISE}, {"G": "(D,) float32"}),
    _op("sgd", 1, "t ← g + μ t; p ← p − lr·(g + μ t if nesterov else t)   (optax.sgd)",
        {**_OPT, "momentum": "float μ in [0, 1) (0: none)", "nesterov": "bool"}, {"params": "(K, D) float32 after each step"}),
    _op("adam", 1, "m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − lr·m̂/(√v̂ + ε), m̂ = m/(1−β₁ᵏ), v̂ = v/(1−β₂ᵏ)   (optax.adam)",
        {**_OPT, "b1": "float", "b2": "float", "eps": "float"}, {"params": "(K, D) float32 after each step"}),
    _op("adamw", 1, "adam's step plus decoupled decay: p ← p − lr·(m̂/(√v̂ + ε) + wd·p)   (optax.adamw)",
        {**_OPT, "b1": "float", "b2": "float", "eps": "float", "weight_decay": "float"},
        {"params": "(K, D) float32 after each step"}),
    _op("int8_do_mm", 1, "y = clip(⌊(x Wᵀ + ⌊(x B)(sA)ᵀ / 2^(4+σs)⌋) / (16·⌊√I⌋)⌋, ±127)   (nano-egg QEggRoll.do_mm)",
        {"W": "(O, I) int8", "x": "(P, N, I) int8", "A": "(P, O, R) int8 unit", "B": "(P, I, R) int8 unit",
         "members": _NOISE["members"], "sigma_shift": "int"}, {"y": "(P, N, O) int8"}, exact=True),
    _op("int8_do_emb", 1, "y = clip(E[t] + ⌊(sA)[t] Bᵀ / 2^(4+σs)⌋, ±127)   (nano-egg QEggRoll.do_emb)",
        {"E": "(V, D) int8", "tokens": "(P, N) int64", "A": "(P, V, R) int8 unit", "B": "(P, D, R) int8 unit",
         "members": _NOISE["members"], "sigma_shift": "int"}, {"y": "(P, N, D) int8"}, exact=True),
    _op("int8_noisy_standard", 1, "y = clip(p + ⌊s·E / 2^(4+σs)⌋, ±127)   (nano-egg get_noisy_standard)",
        {"p": "(D,) int8", "E": "(P, D) int32 unit (a product of two table entries)",
         "E_factors": "(P, D, 2) int8, the two table entries whose product is E (for ports that inject table entries)",
         "members": _NOISE["members"], "sigma_shift": "int"}, {"y": "(P, D) int8"}, exact=True),
    _op("qegg_fitness", 1, "f_k = sign(R_2k − R_2k+1) as int8   (nano-egg convert_fitnesses, fast_fitness)",
        {"raw": "(P,) int32, P even"}, {"f": "(P/2,) int8"}, exact=True),
    # -- level 2: noise derivation ---------------------------------------------------------------------
    _op("fold_in", 2, "jax.random.fold_in on raw threefry-2x32 key data", {"key": "(2,) uint32", "data": "(M,) uint32"},
        {"keys": "(M, 2) uint32"}, exact=True),
    _op("split", 2, "jax.random.split (partitionable threefry)", {"key": "(2,) uint32", "n": "int"},
        {"keys": "(n, 2) uint32"}, exact=True),
    _op("start_index", 2, "start = (fold_in(key, ⌊e/ρ⌋)[0] ⊕ h(n >> 1)) mod 2^log2_size   (nano-egg get_common_start_idx)",
        {"key": "(2,) uint32", "epoch": "int", "members": "(P,) int64", "noise_reuse": "int ρ ≥ 0",
         "log2_size": "int ≤ 30"}, {"start": "(P,) int64"}, exact=True),
    _op("table_entries", 2, "npegg's noise table entries t[start:stop] (npegg.noise, step 1)",
        {"seed": "int", "start": "int", "stop": "int"}, {"t": "(stop − start,) float32"}, exact=True),
    _op("lowrank_factors", 2, "npegg's unit factors A (P, a, R), B (P, b, R) from its table (npegg.noise, steps 2–4)",
        {"seed": "int", "log2_size": "int", "key": "(2,) uint32", "epoch": "int", "members": "(P,) int64",
         "shape": "(2,) int64 (a, b)", "rank": "int", "noise_reuse": "int"}, {"A": "(P, a, R) float32", "B": "(P, b, R) float32"},
        exact=True),
    # -- level 3: whole steps ---------------------------------------------------------------------------
    _op("mlp_forward", 3, "the float MLP (Linear layers, relu between) with every leaf perturbed by EggRoll",
        {"param/<t>/weight": "(O, I) float32", "param/<t>/bias": "(O,) float32", "x": "(P, I) float32",
         "A/<t>/weight, B/<t>/weight": "unit factors", "E/<t>/bias": "(P, O) unit", "members": "(P,)",
         "sigma": "float", "rank": "int"}, {"y": "(P, O) float32"}),
    _op("es_step", 3, "K generations of the full ES step on an MLP: z-score fitness (groups) → G → optimizer → params",
        {"param/<path>": "initial leaves", "raw": "(K, P) float32 raw scores", "A/<path>, B/<path>, E/<path>":
         "(K, P, …) unit noise of each generation", "members": "(P,)", "sigma": "float", "rank": "int",
         "group_size": "int", "optimizer": "'sgd' | 'adam' | 'adamw'", "lr": "float", "b1, b2, eps, weight_decay, momentum":
         "optimizer settings (optax defaults)"}, {"fitness": "(K, P) float32", "param/<path>": "(K, …) after each step"}),
    _op("bytelm_forward", 3, "npegg's float ByteLM (npegg.models.lm) perturbed by EggRoll: log-likelihoods and final state",
        {"param/<path>": "leaves (blocks/… stacked (L, …))", "cell": "'egg' | 'mingru'", "tokens_in": "(P, T) uint8",
         "tokens_tgt": "(P, T) uint8", "state0": "(P, L, D) float32", "A/<path>, B/<path>, E/<path>": "unit noise",
         "members": "(P,)", "sigma": "float", "rank": "int"}, {"ll": "(P, T) float32", "state": "(P, L, D) float32"}),
    _op("egg_forward", 3, "nano-egg's int8 EGG model over a sequence (reset at byte 0): logits, per-step ll, final state",
        {"param/<path>": "int8 leaves (blocks/… stacked (L, …))", "tokens_in": "(P, T) uint8", "tokens_tgt": "(P, T) uint8",
         "state0": "(P, L, H) int8", "A/<path>, B/<path>": "int8 unit factors", "E/<path>": "int32 unit",
         "E_factors/<path>": "(…, 2) int8 entries whose product is E", "members": "(P,)",
         "sigma_shift": "int"}, {"logits": "(P, T, V) int8", "ll": "(P, T) int32", "state": "(P, L, H) int8"}, exact=True),
    _op("qegg_update", 3, "Q-EGGROLL: Z = Σᵢ fᵢ Aᵢ Bᵢᵀ over even members; θ ± 1 where 16|Z| ≥ τ; clip ±127",
        {"param/<path>": "int8 leaves", "fitness": "(P/2,) int8", "A/<path>, B/<path>, E/<path>":
         "unit noise of the even members (P/2, …)", "members": "(P,)", "threshold": "int", "use_clt": "bool"},
        {"param/<path>": "int8 leaves after the update"}, exact=True),
])


def load_adapter(spec: str):
    """The adapter named by ``MODULE:ATTR`` or ``path/to/file.py:ATTR`` (an object, or a class called
    with no arguments).

    Raises ``ValueError`` naming the problem (no colon, module not importable, attribute missing,
    not an adapter, unknown claims) before any case runs.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--backend must be MODULE:ADAPTER (e.g. npegg.conformance.npegg_adapter:ADAPTER), got {spec!r}")
    mod_name, attr = spec.split(":")
    try:
        mod = _import(mod_name)
    except (ImportError, OSError) as e:
        raise ValueError(f"--backend {spec!r}: cannot import {mod_name!r} ({type(e).__name__}: {e})") from e
    if not hasattr(mod, attr):
        raise ValueError(f"--backend {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    obj: Any = getattr(mod, attr)
    if isinstance(obj, type):
        obj = obj()
    check_adapter(obj, spec)
    return obj


def _import(name: str):
    """A module by dotted name, or by file path when ``name`` ends in ``.py`` (an adapter kept in a
    port's tests folder, which is not a package)."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    import sys
    from importlib import util
    from pathlib import Path
    path = Path(name).resolve()
    if not path.is_file():
        raise ImportError(f"no file {path}")
    mod_name = "npegg_conformance_adapter_" + path.stem
    spec = util.spec_from_file_location(mod_name, path)
    mod = util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def check_adapter(obj, where: str = "adapter") -> None:
    """ValueError unless ``obj`` has a str ``name``, ``claims`` of known operations and a ``run``."""
    if not isinstance(getattr(obj, "name", None), str) or not callable(getattr(obj, "run", None)):
        raise ValueError(f"{where}: an adapter needs a str `name`, `claims` and a `run(op, case)` method")
    unknown = sorted(set(obj.claims) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"{where}: claims unknown operations {unknown}; known: {sorted(OPERATIONS)}")
