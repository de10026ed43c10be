"""npegg itself as a conformance adapter: the oracle's answer to every operation, and the self-check.

Each operation is computed with npegg's own library functions (the noisers with
``npegg.noise.InjectedNoise`` carrying the case's noise, ``npegg.fitness``, ``npegg.optim``, the
models, ``npegg.int8``), never a second implementation: the kit compares every port against
``ADAPTER.run(op, case)``, and running the kit with ``--backend npegg.conformance.npegg_adapter:ADAPTER``
checks the plumbing (case formats, conventions, replay) end to end.
"""
from __future__ import annotations

import numpy as np

from .. import fitness as F
from .. import keys as K
from .. import noise as N
from .. import optim
from ..int8 import qes
from ..models.base_model import EMB_PARAM, MM_PARAM, PARAM
from ..models.common import MLP
from ..models.egg import EGG, generate
from ..models.lm import ByteLM
from ..noiser.eggroll import EggRoll
from ..noiser.qeggroll import QEggRoll
from ..tree import flatten, unflatten
from .protocol import OPERATIONS

_KEY = np.array([0, 1], np.uint32)          # the one leaf key of a single-leaf primitive


def _float_noiser(sigma, rank, records, **kw):
    frozen, nparams = EggRoll.init_noiser({}, float(sigma), 0.0, rank=int(rank), noise=N.InjectedNoise(records), **kw)
    return frozen, nparams


def _lowrank_record(case, members=None):
    return {_KEY.tobytes(): {"members": case["members"] if members is None else members, "A": case["A"], "B": case["B"]}}


def injected_model_noise(case, params: dict, kinds: dict, members, layer_axis=1):
    """(keys tree, InjectedNoise) for a whole model: leaf j gets key (j, l) per layer l, whose record
    holds the case's ``A/<path>``, ``B/<path>`` or ``E/<path>`` (the layer on ``layer_axis``)."""
    keys, records = {}, {}
    for j, (path, p) in enumerate(params.items()):
        stacked = path.startswith("blocks/")
        n_layers = np.shape(p)[0] if stacked else 1
        ks = np.array([[j, l] for l in range(n_layers)], np.uint32)
        keys[path] = ks if stacked else ks[0]
        for l in range(n_layers):
            rec = {"members": members}
            names = ("A", "B") if kinds[path] in (MM_PARAM, EMB_PARAM) else ("E",)
            for name in names:
                arr = case[f"{name}/{path}"]
                rec[name] = np.take(arr, l, axis=layer_axis) if stacked else arr
            records[ks[l].tobytes()] = rec
    return unflatten(keys), N.InjectedNoise(records)


def params_of(case) -> dict:
    """{path: leaf} of the ``param/<path>`` entries of a case."""
    return {k[6:]: v for k, v in case.items() if k.startswith("param/")}


def mlp_kinds(params: dict) -> dict:
    return {p: (MM_PARAM if p.endswith("weight") else PARAM) for p in params}


def _optimizer(case, name):
    lrs = np.asarray(case["lrs"], np.float64)
    lr = optim.constant_schedule(float(lrs[0])) if np.all(lrs == lrs[0]) else (lambda c: float(lrs[c]))
    if name == "sgd":
        return optim.sgd(lr, momentum=float(case["momentum"]) or None, nesterov=bool(case["nesterov"]))
    return optim.adam(lr, float(case["b1"]), float(case["b2"]), float(case["eps"]),
                      weight_decay=float(case.get("weight_decay", 0.0)) if name == "adamw" else 0.0)


def _opt_steps(case, name):
    opt = _optimizer(case, name)
    p = {"p": np.asarray(case["p0"])}                       # float32 (a float64 case: the exact answer)
    state, out = opt.init(p), []
    for g in case["grads"]:
        updates, state = opt.update({"p": np.asarray(g)}, state, p)
        p = optim.apply_updates(p, updates)
        out.append(p["p"])
    return {"params": np.stack(out)}


def _mlp_forward(case):
    params = params_of(case)
    members = case["members"]
    keys, noise = injected_model_noise(case, params, mlp_kinds(params), members)
    frozen, nparams = _float_noiser(case["sigma"], case["rank"], {}, noise_reuse=1)
    frozen["noise"] = noise
    y = MLP.forward(EggRoll, frozen, nparams, {"activation": "relu"}, unflatten(params), keys, (0, members), case["x"])
    return {"y": y}


def _es_step(case):
    params = unflatten(params_of(case))
    flat = flatten(params)
    kinds = mlp_kinds(flat)
    members = case["members"]
    name = str(case["optimizer"])
    solver_kwargs = {"momentum": float(case["momentum"]) or None} if name == "sgd" else \
        {"b1": float(case["b1"]), "b2": float(case["b2"]), "eps": float(case["eps"])}
    if name == "adamw":
        solver_kwargs["weight_decay"] = float(case["weight_decay"])
    lrs = np.asarray(case["lrs"], np.float64)
    frozen, nparams = EggRoll.init_noiser(params, float(case["sigma"]), lambda c: float(lrs[c]), solver=name,
                                          solver_kwargs=solver_kwargs, rank=int(case["rank"]),
                                          group_size=int(case["group_size"]))
    out = {"fitness": [], **{f"param/{p}": [] for p in flat}}
    for k in range(case["raw"].shape[0]):
        step = {n: v[k] for n, v in case.items() if n[:2] in ("A/", "B/", "E/")}
        keys, frozen["noise"] = injected_model_noise(step, flat, kinds, members)
        fit = EggRoll.convert_fitnesses(frozen, nparams, case["raw"][k]).astype(np.float32)
        nparams, params = EggRoll.do_updates(frozen, nparams, params, keys, fit, (np.full(members.size, k), members),
                                             unflatten(kinds))
        out["fitness"].append(fit)
        for p, v in flatten(params).items():
            out[f"param/{p}"].append(v)
    return {k: np.stack(v) for k, v in out.items()}


def _bytelm_forward(case):
    params = params_of(case)
    d, n_layers = params["emb"].shape[1], params["blocks/ln1/weight"].shape[0]
    mlp_ratio = params["blocks/mlp/0/weight"].shape[1] // d if "blocks/mlp/0/weight" in params else 0
    init = ByteLM.rand_init(K.key(0), d, n_layers, cell=str(case["cell"]), mlp_ratio=mlp_ratio,
                            direct_path="direct" in params)
    kinds = flatten(init.es_map)
    members = case["members"]
    keys, noise = injected_model_noise(case, params, kinds, members)
    frozen, nparams = _float_noiser(case["sigma"], case["rank"], {})
    frozen["noise"] = noise
    ll, state = ByteLM.forward(EggRoll, frozen, nparams, init.frozen_params, unflatten(params), keys, (0, members),
                               case["tokens_in"], case["state0"], targets=case["tokens_tgt"])
    return {"ll": ll, "state": state}


def _int8_noiser(case, records):
    return QEggRoll.init_noiser({}, int(case.get("sigma_shift", 4)), noise=N.InjectedNoise(records))


def _egg_forward(case):
    params = params_of(case)
    kinds = flatten(EGG.rand_init(K.key(0), 4, 1).es_map)
    members = case["members"]
    keys, noise = injected_model_noise(case, params, kinds, members)
    frozen, nparams = _int8_noiser(case, {})
    frozen["noise"] = noise
    out = generate(QEggRoll, frozen, nparams, None, unflatten(params), keys, (0, members), case["tokens_in"],
                   case["tokens_tgt"], case["state0"], record=True)
    return {"logits": out.logits, "ll": out.ll, "state": out.final_state}


def _qegg_update(case):
    params = params_of(case)
    kinds = flatten(EGG.rand_init(K.key(0), 4, 1).es_map)
    members = case["members"]
    keys, noise = injected_model_noise(case, params, kinds, members[::2])
    frozen, nparams = QEggRoll.init_noiser({}, 4, int(case["threshold"]), noise=noise, use_clt=bool(case["use_clt"]))
    _, new = QEggRoll.do_updates(frozen, nparams, unflatten(params), keys, case["fitness"],
                                 (np.zeros(members.size, np.int64), members), unflatten(kinds))
    return {f"param/{p}": v for p, v in flatten(new).items()}


def _run(op, c):
    info = (0, c.get("members"))
    if op in ("do_mm", "do_Tmm", "do_emb"):
        frozen, nparams = _float_noiser(c["sigma"], c["A"].shape[-1], _lowrank_record(c))
        arg = c["tokens"] if op == "do_emb" else c["x"]
        return {"y": getattr(EggRoll, op)(frozen, nparams, c["W"] if op != "do_emb" else c["E"], _KEY, info, arg)}
    if op == "noisy_standard":
        frozen, nparams = _float_noiser(c["sigma"], 1, {_KEY.tobytes(): {"members": c["members"], "E": c["E"]}})
        return {"y": EggRoll.get_noisy_standard(frozen, nparams, c["p"], _KEY, info)}
    if op == "fitness_zscore":
        return {"f": F.zscore(c["raw"], int(c["group_size"]))}
    if op == "fitness_centered_ranks":
        return {"f": F.centered_ranks(c["raw"])}
    if op == "fitness_pair_sign":
        return {"f": F.pair_sign(c["raw"])}
    if op in ("grad_lowrank", "grad_full"):
        shape = c["E"].shape[1:] if op == "grad_full" else (c["A"].shape[1], c["B"].shape[1])
        rec = {"members": c["members"], **({"E": c["E"]} if op == "grad_full" else {"A": c["A"], "B": c["B"]})}
        rank = 1 if op == "grad_full" else c["A"].shape[-1]
        frozen, nparams = _float_noiser(c["sigma"], rank, {_KEY.tobytes(): rec})
        dtype = (c["E"] if op == "grad_full" else c["A"]).dtype
        g = EggRoll.estimate_grads(frozen, nparams, {"w": np.zeros(shape, dtype)}, {"w": _KEY}, c["fitness"],
                                   (0, c["members"]), {"w": PARAM if op == "grad_full" else MM_PARAM})
        return {"G": g["w"]}
    if op in ("sgd", "adam", "adamw"):
        return _opt_steps(c, op)
    if op in ("int8_do_mm", "int8_do_emb"):
        frozen, nparams = _int8_noiser(c, _lowrank_record(c))
        fn = QEggRoll.do_mm if op == "int8_do_mm" else QEggRoll.do_emb
        return {"y": fn(frozen, nparams, c["W"] if op == "int8_do_mm" else c["E"], _KEY, info,
                        c["x"] if op == "int8_do_mm" else c["tokens"])}
    if op == "int8_noisy_standard":
        frozen, nparams = _int8_noiser(c, {_KEY.tobytes(): {"members": c["members"], "E": c["E"]}})
        return {"y": QEggRoll.get_noisy_standard(frozen, nparams, c["p"], _KEY, info)}
    if op == "qegg_fitness":
        return {"f": qes.fitness_sign(c["raw"])}
    if op == "fold_in":
        return {"keys": K.fold_in(c["key"], c["data"])}
    if op == "split":
        return {"keys": K.split(c["key"], int(c["n"]))}
    if op == "start_index":
        return {"start": N.start_indices(c["key"], int(c["epoch"]), c["members"], int(c["noise_reuse"]),
                                         1 << int(c["log2_size"]))}
    if op == "table_entries":
        return {"t": N.table_entries(int(c["seed"]), int(c["start"]), int(c["stop"]))}
    if op == "lowrank_factors":
        table = N.NoiseTable(seed=int(c["seed"]), log2_size=int(c["log2_size"]))
        a, b = table.lowrank(c["key"], int(c["epoch"]), c["members"], tuple(int(s) for s in c["shape"]),
                             int(c["rank"]), int(c["noise_reuse"]))
        return {"A": np.array(a), "B": np.array(b)}
    return {"mlp_forward": _mlp_forward, "es_step": _es_step, "bytelm_forward": _bytelm_forward,
            "egg_forward": _egg_forward, "qegg_update": _qegg_update}[op](c)


class NpeggAdapter:
    """npegg, claiming every operation of ``protocol.OPERATIONS``."""
    name = "npegg"
    about = "this checkout"
    claims = frozenset(OPERATIONS)

    def run(self, op: str, case: dict) -> dict:
        return _run(op, case)


ADAPTER = NpeggAdapter()
