"""Golden vectors of npegg's float byte language models (the ``ByteLM`` that ``npegg train`` trains).

A PyTorch, JAX or GPU port of ``npegg train`` checks itself against these files: every
parameter, every member's noise, the inputs and every output of a few training generations are
recorded, so a port needs npegg's model equations (``docs/vectors.md``) and nothing of npegg's
noise table. ``export_lm_vectors(folder)`` writes one file per cell, ``float_lm_<cell>.npz``; each
holds ``steps`` generations of one small model, each generation exactly as ``FloatRun.epoch_step``
runs it:

    ll, state' = ByteLM(tokens_in, state, targets=tokens_tgt) with iterinfo (epoch, members)
    raw = Σ_t ll (float64);  f = convert_fitnesses(raw);  G = estimate_grads(f);  params ← optimizer(G)

plus the plain (unperturbed) forward of the same inputs, the per-step logits and states of both
(one call per time step), and the scaled noise factors of every member, leaf and layer. The next
generation starts from the new params and from the perturbed forward's final state.

The format is written out key by key in ``docs/vectors.md``; ``check`` there means: inject the
recorded noise, feed each generation the recorded params, state and fitness, and compare within
the tolerances stored in the file (``meta/rtol``, ``meta/atol``). The export runs on one BLAS
thread where it can set it (``npegg export-vectors`` does), so that it is reproducible on one machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import keys as K
from ..models.base_model import EMB_PARAM, MM_PARAM, PARAM, simple_es_tree_key
from ..models.lm import ByteLM
from ..noise import NoiseTable
from ..noiser.eggroll import EggRoll, get_lora_update_params, get_nonlora_update_params
from ..tree import flatten
from .vectorfile import noise_table_log2, save_vectors

FORMAT = "npegg float_lm 1"
#: the settings of the exported files: small enough to read, large enough to exercise everything
SETTINGS = dict(hidden_dim=16, n_layers=2, pop=8, T=12, rank=2, sigma=0.05, lr=0.01, optimizer="adam",
                group_size=4, noise_reuse=1, steps=2, head_scale=1.0, model_seed=7, noise_seed=0,
                noise_log2_size=18)
#: Tolerance between two float32 implementations (docs/vectors.md, "Tolerances"): npegg's float32
#: numbers and a float64 replay of the same equations (examples/check_vectors.py) agree within
#: rtol 1e-5, atol 1e-6; a float32 port errs by as much again, so the two agree within twice that.
RTOL, ATOL = 2e-5, 2e-6


def export_lm_vectors(folder, cells=("egg", "mingru"), *, write=None, **settings) -> list:
    """Write ``float_lm_<cell>.npz`` for each cell into ``folder``; returns the paths.

    ``settings`` replace ``SETTINGS``' (sizes, pop, lr, optimizer …); ``write`` as in
    ``vectorfile.save_vectors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_lm_vectors(folder / f"float_lm_{cell}.npz", cell, write=write, **settings) for cell in cells]


def write_lm_vectors(path, cell: str, *, write=None, **settings) -> Path:
    """One file: ``steps`` generations of a ByteLM with ``cell`` ("egg" or "mingru"): per step the plain
    and perturbed forward (logits, states, ll), fitness, G and the optimizer step, keyed as listed
    at the top of this module. ``settings`` override ``SETTINGS``; returns the path written."""
    s = {**SETTINGS, **settings}
    path = Path(path)
    D, L, P, T, steps = s["hidden_dim"], s["n_layers"], s["pop"], s["T"], s["steps"]
    root = K.key(s["model_seed"])
    init = ByteLM.rand_init(K.fold_in(root, 0), D, L, cell=cell, head_scale=s["head_scale"])
    keys = simple_es_tree_key(init.params, K.fold_in(root, 1), init.scan_map)
    s["noise_log2_size"] = noise_table_log2(flatten(init.params), s["rank"], s["noise_log2_size"])
    table = NoiseTable(seed=s["noise_seed"], log2_size=s["noise_log2_size"])
    frozen, nparams = EggRoll.init_noiser(init.params, s["sigma"], s["lr"], solver=s["optimizer"], rank=s["rank"],
                                          group_size=s["group_size"], noise_reuse=s["noise_reuse"], noise=table)
    out = {"meta/format": np.array(FORMAT), "meta/cell": np.array(cell), "meta/vocab": np.int32(256),
           "meta/rtol": np.float64(RTOL), "meta/atol": np.float64(ATOL),
           "meta/noise_table": np.array("npegg.noise.NoiseTable (recorded below; not needed to check)")}
    for name in ("hidden_dim", "n_layers", "pop", "T", "rank", "group_size", "noise_reuse", "steps",
                 "model_seed", "noise_seed", "noise_log2_size"):
        out[f"meta/{name}"] = np.int32(s[name])
    for name in ("sigma", "lr", "head_scale"):
        out[f"meta/{name}"] = np.float64(s[name])
    out["meta/optimizer"] = np.array(s["optimizer"])
    es_map, key_of = flatten(init.es_map), flatten(keys)
    for leaf, p in flatten(init.params).items():
        out[f"param0/{leaf}"] = p
        out[f"es_map/{leaf}"] = np.int32(es_map[leaf])
        out[f"key/{leaf}"] = key_of[leaf]

    rng = np.random.default_rng(s["model_seed"])
    members = np.arange(P)
    params = init.params
    state = (0.5 * rng.standard_normal((P, L, D))).astype(np.float32)    # (P, L, D): a carried state
    for k in range(steps):
        pre = f"step{k}/"
        stream = rng.integers(1, 256, (P // 2, T + 1)).astype(np.uint8)  # one stream per antithetic pair
        stream[:, rng.integers(1, T, P // 2)] = 0                         # a document start in each
        stream[0, 0] = 0                                                  # and one at step 0
        tokens = np.repeat(stream, 2, axis=0)                             # (P, T+1) uint8
        tin, tgt = tokens[:, :-1], tokens[:, 1:]
        out.update({pre + "epoch": np.int32(k), pre + "members": members.astype(np.int32),
                    pre + "tokens_in": tin, pre + "tokens_tgt": tgt, pre + "state0": state})
        for leaf, p in flatten(params).items():
            out[pre + f"param/{leaf}"] = p
        out.update(_noise_records(pre, frozen, nparams, params, keys, es_map, (k, members)))

        def fwd(info, *args, **kw):
            return ByteLM.forward(EggRoll, frozen, nparams, init.frozen_params, params, keys, info, *args, **kw)
        for kind, info in (("plain", None), ("pert", (k, members))):
            logits, states, s_t = [], [], state
            for t in range(T):                                            # one call per step
                lg, s_t = fwd(info, tin[:, t:t + 1], s_t)
                logits.append(lg[:, 0])
                states.append(s_t)
            ll, final = fwd(info, tin, state, targets=tgt)                # the fused chunk, as training runs it
            out.update({pre + f"{kind}/logits": np.stack(logits, axis=1),    # (P, T, V)
                        pre + f"{kind}/state": np.stack(states, axis=1),     # (P, T, L, D)
                        pre + f"{kind}/ll": ll,                              # (P, T) nats
                        pre + f"{kind}/final_state": final})                 # (P, L, D)
        raw = out[pre + "pert/ll"].sum(axis=1, dtype=np.float64)          # (P,) nats
        fit = EggRoll.convert_fitnesses(frozen, nparams, raw)
        info = (np.full(P, k), members)
        grads = EggRoll.estimate_grads(frozen, nparams, params, keys, fit, info, init.es_map)
        nparams, params = EggRoll.do_updates(frozen, nparams, params, keys, fit, info, init.es_map)
        out.update({pre + "raw_scores": raw, pre + "fitness": fit})
        for leaf in flatten(params):
            out[pre + f"grad/{leaf}"] = flatten(grads)[leaf]
            out[pre + f"new/{leaf}"] = flatten(params)[leaf]
        opt = nparams["opt_state"]
        out[pre + "opt/count"] = np.asarray(opt["count"])
        for part in ("mu", "nu", "trace"):
            for leaf, v in flatten(opt.get(part, {})).items():
                out[pre + f"opt/{part}/{leaf}"] = v
        state = out[pre + "pert/final_state"]
    return save_vectors(path, out, write=write)


def _noise_records(pre, frozen, nparams, params, keys, es_map, info) -> dict:
    """Scaled noise of every member: A = s·σ/√r·A_unit and B (MM, EMB), E = s·σ·e (PARAM).

    Stacked leaves (blocks/…) get a layer axis after the member axis: (P, L, …).
    """
    rec = {}
    sigma = nparams["sigma"]
    for leaf, p in flatten(params).items():
        key = np.asarray(flatten(keys)[leaf])
        layers = [(p, key)] if key.ndim == 1 else [(p[l], key[l]) for l in range(key.shape[0])]
        kind = int(es_map[leaf])
        if kind in (MM_PARAM, EMB_PARAM):
            ab = [get_lora_update_params(frozen, sigma, info, q.shape, kq) for q, kq in layers]
            a, b = [np.stack([x[i] for x in ab], axis=1) for i in (0, 1)]  # (P, L, a, r), (P, L, b, r)
            if key.ndim == 1:
                a, b = a[:, 0], b[:, 0]
            rec[pre + f"noise/{leaf}/A"], rec[pre + f"noise/{leaf}/B"] = a, np.array(b)
        elif kind == PARAM:
            e = np.stack([get_nonlora_update_params(frozen, sigma, info, q.shape, kq) for q, kq in layers], axis=1)
            rec[pre + f"noise/{leaf}/E"] = e[:, 0] if key.ndim == 1 else e
    return rec
