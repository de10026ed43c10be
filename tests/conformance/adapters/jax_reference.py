"""The official JAX code (HyperscaleES, nano-egg) as a conformance adapter: ``ADAPTER``.

Nothing of the reference is copied here: its sources are *run* from ``../shared/reference-impl``
(GPL-3.0; override the folder with ``NPEGG_REFERENCE_IMPL``). HyperscaleES's noiser and model
modules are loaded by file path under empty package shells (``hyperscalees/__init__`` imports the
LLM and environment code, which needs other dependencies); from nano-egg's ``run.py``, a training
script that parses its command line and imports wandb and datasets at import, only the module-level
definitions (classes, functions, constants) are executed, with a stand-in for its ``args``.

**How noise is injected.** The reference draws its noise inside ``get_lora_update_params`` /
``get_nonlora_update_params``: HyperscaleES as ``jax.random.normal(fold_in(fold_in(key, epoch),
thread // 2), (a + b, r))``, nano-egg as a ``dynamic_slice`` of its table at a start index hashed
from the key. Everything around the draw (the antithetic sign, the scale σ/√r, B = the first b
rows, the matmuls, shifts, updates) is the reference's own code. Only the draw is redirected to
the case's unit noise:

- HyperscaleES: the noiser module sees a ``jax`` whose ``random.fold_in`` keeps (leaf, pair) and
  whose ``random.normal`` slices a buffer holding each leaf's noise pair by pair; a leaf's "key"
  is its index.
- nano-egg: ``jax.random.fold_in``/``key_data`` and the module's own hash ``fold_in`` are
  replaced so that the start index is the offset of the pair's block in the buffer passed as
  ``BIG_RAND_MATRIX``; full-rank noise is injected as the two table entries whose product it is
  (``E_factors``). The level-2 ``start_index`` runs the untouched definitions.

The 2³⁰-entry table of nano-egg's ``init_noiser`` (4 GiB while drawn) is never built; the
log-likelihood table is built by the reference's own expression, up to the largest index a case
reaches. Operations the reference does not have are not claimed: ``do_emb`` (EggRoll raises),
``centered_ranks`` and ``pair_sign`` (no such shaping), npegg's noise table and factors, and
npegg's float ByteLM.
"""
from __future__ import annotations

import ast
import contextlib
import io
import importlib
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[3]
REFERENCE_IMPL = Path(os.environ.get("NPEGG_REFERENCE_IMPL", REPO.parent / "shared" / "reference-impl"))
HYPERSCALEES = REFERENCE_IMPL / "HyperscaleES" / "src" / "hyperscalees"
NANO_EGG = REFERENCE_IMPL / "nano-egg" / "run.py"


def missing() -> str:
    """Why the reference cannot run here ('' when it can)."""
    if not HYPERSCALEES.is_dir() or not NANO_EGG.is_file():
        return (f"the reference implementations are not at {REFERENCE_IMPL} (HyperscaleES/src/hyperscalees and "
                f"nano-egg/run.py); a clone of npegg does not include them: set NPEGG_REFERENCE_IMPL to a folder "
                f"holding checkouts of ESHyperscale/HyperscaleES (b77f7d6) and ESHyperscale/nano-egg (a04bab2)")
    for mod in ("jax", "optax"):
        try:
            importlib.import_module(mod)
        except ImportError:
            return f"{mod} is not installed (pip install -e '.[reference]')"
    return ""


# -- loading ---------------------------------------------------------------------------------------
def _shell(name, path):
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod
    return mod


def load_hyperscalees():
    """The reference's eggroll noiser and common models, imported without hyperscalees/__init__."""
    if "hyperscalees.noiser.eggroll" not in sys.modules:
        _shell("hyperscalees", HYPERSCALEES)
        _shell("hyperscalees.noiser", HYPERSCALEES / "noiser")
        _shell("hyperscalees.models", HYPERSCALEES / "models")
    return (importlib.import_module("hyperscalees.noiser.eggroll"), importlib.import_module("hyperscalees.models.common"))


_RUN_NAMES = {"PARAM", "MM_PARAM", "EMB_PARAM", "FIXED_POINT", "DTYPE", "MAX", "LOGMAX", "FBIT", "EXP2TABLE", "NOISER"}


def load_nano_egg() -> dict:
    """A namespace with run.py's classes, functions and constants, executed without its script part."""
    import jax
    import jax.numpy as jnp
    from functools import partial
    from typing import NamedTuple, Optional
    tree = ast.parse(NANO_EGG.read_text(), str(NANO_EGG))
    keep = [n for n in tree.body if (isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name != "Args") or
            (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id in _RUN_NAMES for t in n.targets))]
    ns = {"jax": jax, "jnp": jnp, "np": np, "os": os, "partial": partial, "NamedTuple": NamedTuple, "Optional": Optional,
          "dataclass": __import__("dataclasses").dataclass, "args": SimpleNamespace(dtype="int8", update_batch_size=1),
          "__name__": "nano_egg_run"}
    exec(compile(ast.Module(keep, []), str(NANO_EGG), "exec"), ns)
    return ns


# -- noise injection -------------------------------------------------------------------------------
class _Buffer:
    """Every leaf's unit noise, pair by pair, in one flat array; a leaf's key is its index."""

    def __init__(self):
        self.blocks, self.offsets, self.strides = [], [], []

    def add(self, per_member: np.ndarray, members) -> int:
        """Append one leaf's noise (P, …), one block per pair id (member >> 1); returns the leaf index."""
        pairs = np.asarray(members) >> 1
        rows = np.zeros((int(pairs.max()) + 1,) + per_member.shape[1:], per_member.dtype)
        rows[pairs] = per_member
        self.offsets.append(sum(b.size for b in self.blocks))
        self.strides.append(int(np.prod(per_member.shape[1:])))
        self.blocks.append(rows.reshape(-1))
        return len(self.offsets) - 1

    def flat(self, dtype):
        return np.concatenate(self.blocks).astype(dtype) if self.blocks else np.zeros(1, dtype)


class _HyperscaleShim:
    """``jax`` as HyperscaleES's noiser module sees it: all of jax, except that ``random.fold_in``
    carries (leaf, pair) and ``random.normal`` reads that pair's block of the injected buffer."""

    def __init__(self, jax):
        self._jax, self.buffer, self.offsets = jax, None, None
        shim = self

        class _Random:
            @staticmethod
            def fold_in(key, data):
                jnp = jax.numpy
                if jnp.ndim(key) == 0:                 # fold_in(key, epoch): the noise given is this epoch's
                    return jnp.stack([key, jnp.zeros_like(key)])
                return jnp.stack([key[0], jnp.asarray(data, key.dtype)])   # fold_in(…, thread // 2)

            @staticmethod
            def normal(key, shape, dtype=None):
                size = int(np.prod(shape))
                start = shim.offsets[key[0]] + key[1] * size
                block = jax.lax.dynamic_slice_in_dim(shim.buffer, start, size)
                return block.reshape(shape).astype(dtype or shim.buffer.dtype)

        self.random = _Random

    def __getattr__(self, name):
        return getattr(self._jax, name)


class JaxReference:
    """The adapter: HyperscaleES's EggRoll + optax (float), nano-egg's QEggRoll and EGG (int8)."""
    name = "JAX reference"
    claims = frozenset({"do_mm", "do_Tmm", "noisy_standard", "fitness_zscore", "grad_lowrank", "grad_full", "sgd",
                        "adam", "adamw", "int8_do_mm", "int8_do_emb", "int8_noisy_standard", "qegg_fitness",
                        "fold_in", "split", "start_index", "mlp_forward", "es_step", "egg_forward", "qegg_update"})

    def __init__(self):
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        import jax
        import jax.numpy as jnp
        import optax
        jax.config.update("jax_enable_x64", False)
        self.jax, self.jnp, self.optax = jax, jnp, optax
        self.eggroll, self.common = load_hyperscalees()
        self.shim = _HyperscaleShim(jax)
        self.eggroll.jax = self.shim                      # the noiser module's draws now read the buffer
        self.run_ns = load_nano_egg()                     # untouched: level 2
        self.egg_ns = load_nano_egg()                     # its draws redirected: levels 1 and 3
        self._patch_nano_egg(self.egg_ns)
        self._log2 = np.zeros(0, np.int32)
        self.about = (f"HyperscaleES b77f7d6 + nano-egg a04bab2 (../shared/reference-impl), jax {jax.__version__}, "
                      f"optax {optax.__version__}")

    # -- nano-egg plumbing ---------------------------------------------------------------------------
    def _patch_nano_egg(self, ns):
        jax, jnp = self.jax, self.jnp
        holder = SimpleNamespace(offsets=None, strides=None)
        self._egg_holder = holder

        class _Random:
            def __getattr__(self, name):
                return getattr(jax.random, name)

            @staticmethod
            def fold_in(key, data):                      # fold_in(key, epoch): the noise given is this epoch's
                return key

            @staticmethod
            def key_data(key):                           # (offset of the leaf's block, its stride)
                return jnp.stack([holder.offsets[key], holder.strides[key]])

        class _Jax:
            random = _Random()

            def __getattr__(self, name):
                return getattr(jax, name)

        ns["jax"] = _Jax()
        ns["fold_in"] = lambda base, pair: base[0] + pair * base[1]    # start = offset + pair · stride

    def _egg_noiser(self, buffer: _Buffer, sigma_shift, threshold=0, use_clt=True, rank=1):
        ns = self.egg_ns
        self._egg_holder.offsets = self.jnp.asarray(np.array(buffer.offsets, np.int32))
        self._egg_holder.strides = self.jnp.asarray(np.array(buffer.strides, np.int32))
        real = ns["jax"]
        small = SimpleNamespace(random=SimpleNamespace(normal=lambda key, n: self.jnp.zeros(1),
                                                       key=lambda seed: None))
        ns["jax"] = small                                 # init_noiser's 2³⁰-entry table: not drawn
        try:
            frozen, nparams = ns["QEggRoll"].init_noiser(None, sigma_shift, threshold, noise_reuse=1, rank=int(rank),
                                                         use_clt=use_clt, fast_fitness=True)
        finally:
            ns["jax"] = real
        nparams["BIG_RAND_MATRIX"] = self.jnp.asarray(buffer.flat(np.int8))
        return frozen, nparams

    def _float_factors(self, buffer, a, b, members):
        return buffer.add(np.concatenate([b, a], axis=1).astype(np.float32), members)

    # -- operations ----------------------------------------------------------------------------------
    def run(self, op, case):
        with contextlib.redirect_stdout(io.StringIO()):      # HyperscaleES prints on every low-rank update
            return getattr(self, "_" + op)(case)

    def _set_buffer(self, buffer):
        self.shim.buffer = self.jnp.asarray(buffer.flat(np.float32))
        self.shim.offsets = self.jnp.asarray(np.array(buffer.offsets, np.int32))

    def _float_noiser(self, sigma, rank=1, **kw):
        return self.eggroll.EggRoll.init_noiser({}, float(sigma), 0.0, rank=int(rank), **kw)

    def _per_member(self, fn, members, *xs):
        jnp = self.jnp
        info = (jnp.zeros(len(members), jnp.int32), jnp.asarray(members, jnp.int32))
        return np.asarray(self.jax.vmap(fn)(info, *[jnp.asarray(x) for x in xs]))

    def _matmul(self, c, name):
        buf = _Buffer()
        key = self._float_factors(buf, c["A"], c["B"], c["members"])
        self._set_buffer(buf)
        frozen, nparams = self._float_noiser(c["sigma"], c["A"].shape[-1])
        w = self.jnp.asarray(c["W"])
        fn = getattr(self.eggroll.EggRoll, name)
        return {"y": self._per_member(lambda it, x: fn(frozen, nparams, w, self.jnp.int32(key), it, x),
                                      c["members"], c["x"])}

    def _do_mm(self, c):
        return self._matmul(c, "do_mm")

    def _do_Tmm(self, c):
        return self._matmul(c, "do_Tmm")

    def _noisy_standard(self, c):
        buf = _Buffer()
        key = buf.add(c["E"], c["members"])
        self._set_buffer(buf)
        frozen, nparams = self._float_noiser(c["sigma"])
        p = self.jnp.asarray(c["p"])
        return {"y": self._per_member(lambda it: self.eggroll.EggRoll.get_noisy_standard(
            frozen, nparams, p, self.jnp.int32(key), it), c["members"])}

    def _fitness_zscore(self, c):
        frozen, nparams = self._float_noiser(1.0, group_size=int(c["group_size"]))
        return {"f": np.asarray(self.eggroll.EggRoll.convert_fitnesses(frozen, nparams, self.jnp.asarray(c["raw"])))}

    def _grad(self, c, kind, noise):
        buf = _Buffer()
        key = noise(buf)
        self._set_buffer(buf)
        rank = c["A"].shape[-1] if kind == 1 else 1
        frozen, nparams = self._float_noiser(c["sigma"], rank)
        shape = (c["A"].shape[1], c["B"].shape[1]) if kind == 1 else c["E"].shape[1:]
        m = self.jnp.asarray(c["members"], self.jnp.int32)
        g = self.eggroll.EggRoll._do_update(self.jnp.zeros(shape, self.jnp.float32), self.jnp.int32(key),
                                            self.jnp.asarray(c["fitness"]), (self.jnp.zeros_like(m), m), kind,
                                            nparams["sigma"], frozen)
        return {"G": np.asarray(g)}

    def _grad_lowrank(self, c):
        return self._grad(c, 1, lambda buf: self._float_factors(buf, c["A"], c["B"], c["members"]))

    def _grad_full(self, c):
        return self._grad(c, 0, lambda buf: buf.add(c["E"], c["members"]))

    def _solver(self, c, name):
        optax, jnp = self.optax, self.jnp
        lrs = np.asarray(c["lrs"], np.float64)
        lr = float(lrs[0]) if np.all(lrs == lrs[0]) else (lambda count, t=jnp.asarray(lrs, jnp.float32): t[count])
        if name == "sgd":
            return optax.sgd(lr, momentum=float(c["momentum"]) or None, nesterov=bool(c.get("nesterov", False)))
        if name == "adam":
            return optax.adam(lr, b1=float(c["b1"]), b2=float(c["b2"]), eps=float(c["eps"]))
        return optax.adamw(lr, b1=float(c["b1"]), b2=float(c["b2"]), eps=float(c["eps"]),
                           weight_decay=float(c["weight_decay"]))

    def _optimizer(self, c, name):
        solver = self._solver(c, name)
        p = {"p": self.jnp.asarray(c["p0"])}
        state, out = solver.init(p), []
        for g in c["grads"]:
            updates, state = solver.update({"p": self.jnp.asarray(g)}, state, p)
            p = self.optax.apply_updates(p, updates)
            out.append(np.asarray(p["p"]))
        return {"params": np.stack(out)}

    def _sgd(self, c):
        return self._optimizer(c, "sgd")

    def _adam(self, c):
        return self._optimizer(c, "adam")

    def _adamw(self, c):
        return self._optimizer(c, "adamw")

    # -- level 2 ----------------------------------------------------------------------------------
    def _wrap(self, key):
        return self.jax.random.wrap_key_data(self.jnp.asarray(np.asarray(key, np.uint32)))

    def _fold_in(self, c):
        k = self._wrap(c["key"])
        return {"keys": np.stack([np.asarray(self.jax.random.key_data(self.jax.random.fold_in(k, int(d))))
                                  for d in np.asarray(c["data"], np.uint32)])}

    def _split(self, c):
        return {"keys": np.asarray(self.jax.random.key_data(self.jax.random.split(self._wrap(c["key"]), int(c["n"]))))}

    def _start_index(self, c):
        """nano-egg's get_common_start_idx (its table has 2³⁰ entries); a table of 2^L ≤ 2³⁰ entries takes its low L bits."""
        frozen = {"noise_reuse": int(c["noise_reuse"])}
        fn = self.run_ns["get_common_start_idx"]
        k = self._wrap(c["key"])
        m = self.jnp.asarray(c["members"], self.jnp.int32)
        start = self.jax.vmap(lambda t: fn(frozen, (self.jnp.int32(int(c["epoch"])), t), None, k)[0])(m)
        return {"start": np.asarray(start).astype(np.int64) & ((1 << int(c["log2_size"])) - 1)}

    # -- int8 --------------------------------------------------------------------------------------
    def _int8_lowrank(self, c, name):
        buf = _Buffer()
        key = buf.add(np.concatenate([c["B"], c["A"]], axis=1), c["members"])
        frozen, nparams = self._egg_noiser(buf, int(c["sigma_shift"]), rank=c["A"].shape[-1])
        q = self.egg_ns["QEggRoll"]
        param = self.jnp.asarray(c["W"] if name == "do_mm" else c["E"])
        arg = c["x"] if name == "do_mm" else c["tokens"].astype(np.int32)
        fn = getattr(q, name)
        return {"y": self._per_member(lambda it, x: fn(frozen, nparams, param, self.jnp.int32(key), it, x),
                                      c["members"], arg)}

    def _int8_do_mm(self, c):
        return self._int8_lowrank(c, "do_mm")

    def _int8_do_emb(self, c):
        return self._int8_lowrank(c, "do_emb")

    def _int8_noisy_standard(self, c):
        buf = _Buffer()
        key = buf.add(c["E_factors"].reshape(len(c["members"]), -1), c["members"])
        frozen, nparams = self._egg_noiser(buf, int(c["sigma_shift"]))
        p = self.jnp.asarray(c["p"])
        return {"y": self._per_member(lambda it: self.egg_ns["QEggRoll"].get_noisy_standard(
            frozen, nparams, p, self.jnp.int32(key), it), c["members"])}

    def _qegg_fitness(self, c):
        q = self.run_ns["QEggRoll"]
        return {"f": np.asarray(q.convert_fitnesses({"fast_fitness": True}, {}, self.jnp.asarray(c["raw"])))}

    # -- whole steps -------------------------------------------------------------------------------
    def _model_keys(self, buf, case, params, members, float_noise=True, step=None):
        """A key tree of leaf indices (stacked leaves: one per layer) with every leaf's noise in ``buf``."""
        keys = {}
        for path, p in params.items():
            get = (lambda name: case[f"{name}/{path}"] if step is None else case[f"{name}/{path}"][step])
            stacked = path.startswith("blocks/")
            layers = range(p.shape[0]) if stacked else [None]
            ids = []
            for l in layers:
                pick = (lambda a: a[:, l]) if stacked else (lambda a: a)
                if f"A/{path}" in case:
                    block = np.concatenate([pick(get("B")), pick(get("A"))], axis=1)
                elif float_noise:
                    block = pick(get("E"))
                else:
                    f = pick(get("E_factors"))
                    block = f.reshape(f.shape[0], -1)
                ids.append(buf.add(block if not float_noise else block.astype(np.float32), members))
            keys[path] = self.jnp.asarray(np.array(ids if stacked else ids[0], np.int32))
        return keys

    def _unflatten(self, flat):
        from npegg.tree import unflatten
        return unflatten(flat)

    def _mlp_forward(self, c):
        params = {k[6:]: self.jnp.asarray(v) for k, v in c.items() if k.startswith("param/")}
        buf = _Buffer()
        keys = self._model_keys(buf, c, params, c["members"])
        self._set_buffer(buf)
        frozen, nparams = self._float_noiser(c["sigma"], c["rank"])
        tree, ktree = self._unflatten(params), self._unflatten(keys)
        fwd = lambda it, x: self.common.MLP.forward(self.eggroll.EggRoll, frozen, nparams, {"activation": "relu"},
                                                    tree, ktree, it, x)
        return {"y": self._per_member(fwd, c["members"], c["x"])}

    def _es_step(self, c):
        jnp = self.jnp
        flat = {k[6:]: jnp.asarray(v) for k, v in c.items() if k.startswith("param/")}
        es_map = self._unflatten({k: (1 if k.endswith("weight") else 0) for k in flat})
        name = str(c["optimizer"])
        solver = {"sgd": self.optax.sgd, "adam": self.optax.adam, "adamw": self.optax.adamw}[name]
        kw = {"momentum": float(c["momentum"]) or None} if name == "sgd" else \
            {"b1": float(c["b1"]), "b2": float(c["b2"]), "eps": float(c["eps"])}
        if name == "adamw":
            kw["weight_decay"] = float(c["weight_decay"])
        lrs = np.asarray(c["lrs"], np.float64)
        lr = lambda count, t=jnp.asarray(lrs, jnp.float32): t[count]
        params = self._unflatten(flat)
        frozen, nparams = self.eggroll.EggRoll.init_noiser(params, float(c["sigma"]), lr, solver=solver, solver_kwargs=kw,
                                                           group_size=int(c["group_size"]), rank=int(c["rank"]))
        members = jnp.asarray(c["members"], jnp.int32)
        out = {"fitness": [], **{f"param/{p}": [] for p in flat}}
        from npegg.tree import flatten
        for k in range(c["raw"].shape[0]):
            buf = _Buffer()
            keys = self._unflatten(self._model_keys(buf, c, flat, c["members"], step=k))
            self._set_buffer(buf)
            fit = self.eggroll.EggRoll.convert_fitnesses(frozen, nparams, jnp.asarray(c["raw"][k]))
            nparams, params = self.eggroll.EggRoll.do_updates(frozen, nparams, params, keys, fit,
                                                              (jnp.full(members.shape, k, jnp.int32), members), es_map)
            out["fitness"].append(np.asarray(fit))
            for p, v in flatten(params).items():
                out[f"param/{p}"].append(np.asarray(v))
        return {k: np.stack(v) for k, v in out.items()}

    def _log2_table(self, used):
        """run.py's log-likelihood table, LOG2TABLE[i] = int32(log2((i + 1)/16)·16), evaluated at the
        indices ``used`` (its 2²⁸ entries would take 1 GiB); other entries are never read."""
        fbit = self.egg_ns["FBIT"]
        table = np.zeros(int(used.max()) + 1, np.int32)
        table[used] = (np.log2((used + 1) / (2 ** fbit)) * (2 ** fbit)).astype(np.int32)
        return self.jnp.asarray(table)

    def _egg_forward(self, c):
        jnp, ns = self.jnp, self.egg_ns
        params = {k[6:]: jnp.asarray(v) for k, v in c.items() if k.startswith("param/")}
        buf = _Buffer()
        keys = self._model_keys(buf, c, params, c["members"], float_noise=False)
        frozen, nparams = self._egg_noiser(buf, int(c["sigma_shift"]), rank=_rank(c))
        tree, ktree = self._unflatten(params), self._unflatten(keys)
        egg = ns["EGG"]
        n_layer = params["blocks/att/bh"].shape[0]
        fparams = self.run_ns["EGG"].rand_init(self.jax.random.key(0), 2, n_layer, 4, "int8").frozen_params
        m = jnp.asarray(c["members"], jnp.int32)
        tin, tgt = jnp.asarray(c["tokens_in"]), jnp.asarray(c["tokens_tgt"])

        def steps(it, tokens, state):
            """generate_thread's scan (reset the state before a byte 0, one EGG.forward per byte), which
            returns only the summed log-likelihood: here each step's logits are kept, and the
            reference's get_int_ll scores them below."""
            def body(s, tok):
                s = self.jax.lax.select(tok == 0, jnp.zeros_like(s), s)
                x, s = egg.forward(ns["QEggRoll"], frozen, nparams, fparams, tree, ktree, it, tok, s)
                return s, x
            return self.jax.lax.scan(body, state, tokens)
        info = (jnp.zeros_like(m), m)
        state, logits = self.jax.vmap(steps)(info, tin, jnp.asarray(c["state0"]))      # logits (P, T, V)
        exp2 = np.asarray(ns["EXP2TABLE"]).astype(np.int64)
        table = self._log2_table(np.unique(exp2[np.asarray(logits).astype(np.int32) + 128].sum(axis=-1) - 1))
        ll = self.jax.vmap(self.jax.vmap(lambda lg, t: ns["get_int_ll"](table, lg, t)))(logits, tgt)
        return {"logits": np.asarray(logits), "ll": np.asarray(ll), "state": np.asarray(state)}

    def _qegg_update(self, c):
        jnp, ns = self.jnp, self.egg_ns
        params = {k[6:]: jnp.asarray(v) for k, v in c.items() if k.startswith("param/")}
        kinds = {k: (2 if k == "emb" else 1 if f"A/{k}" in c else 0) for k in params}
        buf = _Buffer()
        even = np.asarray(c["members"])[::2]
        keys = self._model_keys(buf, c, params, even, float_noise=False)
        frozen, nparams = self._egg_noiser(buf, 4, int(c["threshold"]), bool(c["use_clt"]), rank=_rank(c))
        ns["args"].update_batch_size = len(even)
        m = jnp.asarray(c["members"], jnp.int32)
        _, new = ns["QEggRoll"].do_updates(frozen, nparams, self._unflatten(params), self._unflatten(keys),
                                           jnp.asarray(c["fitness"]), (jnp.zeros_like(m), m), self._unflatten(kinds))
        from npegg.tree import flatten
        return {f"param/{p}": np.asarray(v) for p, v in flatten(new).items()}


def _rank(case) -> int:
    """The rank of a whole-model case: the last axis of its low-rank factors."""
    return next(v.shape[-1] for k, v in case.items() if k.startswith("A/"))


class _Lazy:
    """Builds the adapter on first use, so that importing this module never needs jax."""
    name = JaxReference.name
    claims = JaxReference.claims

    def __init__(self):
        self._impl = None

    @property
    def about(self):
        return self._get().about

    def _get(self):
        if self._impl is None:
            self._impl = JaxReference()
        return self._impl

    def run(self, op, case):
        return self._get().run(op, case)


ADAPTER = _Lazy()
