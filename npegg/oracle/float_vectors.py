"""Golden vectors of npegg's own float EggRoll computations, in the format of ``float_eggroll.npz``.

A float backend (JAX, PyTorch, GPU) checks itself against npegg with these files exactly as
npegg checks itself against the reference: inject the recorded noise, feed the recorded params
and fitnesses, compare outputs to float32 tolerance. ``export_float_vectors(path)`` writes one
file with, for an ``MLP(in 3, hidden [8, 8], out 2, relu)`` and P = 8 members per step:

- ``param0/<leaf>``, ``es_map/<leaf>``, ``key/<leaf>`` (threefry key words), ``meta/*``;
- per case (rank, group size, optimizer, freeze_nonlora, noise_reuse) and step k:
  ``<c>/step<k>/{epoch, threads, param/*, x, y, y_unperturbed, mm/<t>/weight/{x, out,
  out_unperturbed}, standard/<t>/bias, noise/<t>/weight/{A, B}, noise/<t>/bias/E, raw_scores,
  fitness, grad/*, new/*}`` and, for Adam, ``adam/{count, mu/*, nu/*}``. As in the reference file,
  A is scaled by sign·σ/√r, E by sign·σ, and B is unit;
- ``fitness_unit/*`` and ``noise_reuse_unit/*`` groups.

The noise is npegg's (``npegg.noise``, ``meta/noise_table``), not ``jax.random.normal``; a reader
that injects the recorded noise needs nothing else.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import keys as K
from ..models.common import MLP, MM_PARAM, simple_es_tree_key
from ..noise import NoiseTable
from ..noiser.eggroll import EggRoll, get_lora_update_params, get_nonlora_update_params
from ..tree import flatten
from .vectorfile import noise_table_log2, save_vectors

#: (case name, rank, group size, optimizer, learning rate, steps, freeze_nonlora, noise_reuse)
CASES = (
    ("r1_g0_sgd", 1, 0, "sgd", 0.1, 3, False, 1),
    ("r1_g4_adam", 1, 4, "adam", 0.01, 3, False, 1),
    ("r4_g0_adam", 4, 0, "adam", 0.01, 3, False, 1),
    ("r4_g4_sgd", 4, 4, "sgd", 0.1, 3, False, 1),
    ("r1_g0_sgd_freeze", 1, 0, "sgd", 0.1, 1, True, 1),
    ("r1_g0_sgd_reuse0", 1, 0, "sgd", 0.1, 3, False, 0),
)


def float_cases(*, lr=None, optimizer=None, rank=None, steps=None) -> list:
    """``CASES`` with the given settings replacing each case's own, renamed after what they run.

    The names read r<rank>_g<group>_<optimizer>[_freeze][_reuse0] (a number is appended where two
    cases would share one); with no overrides they are ``CASES`` exactly.
    """
    cases, seen = [], {}
    for _, r, group, opt, case_lr, n, freeze, reuse in CASES:
        r, opt = rank or r, optimizer or opt
        name = f"r{r}_g{group}_{opt}" + ("_freeze" if freeze else "") + ("_reuse0" if reuse == 0 else "")
        seen[name] = seen.get(name, 0) + 1
        name += f"_{seen[name]}" if seen[name] > 1 else ""
        cases.append((name, r, group, opt, lr or case_lr, steps or n, freeze, reuse))
    return cases


def export_float_vectors(path, *, seed: int = 5, pop: int = 8, sigma: float = 0.1, noise_seed: int = 0,
                         noise_log2_size: int = 16, dims=(3, 8, 8, 2), lr=None, optimizer=None, rank=None,
                         steps=None, write=None) -> Path:
    """Write one ``float_eggroll``-format file of npegg's own computations; returns its path.

    ``dims`` = (in, hidden…, out) of the MLP; ``lr``, ``optimizer``, ``rank``, ``steps`` replace
    every case's own (``float_cases``); ``write`` as in ``vectorfile.save_vectors``. The noise
    table grows past 2^noise_log2_size when the MLP's slices need it.
    """
    path = Path(path)
    cases = float_cases(lr=lr, optimizer=optimizer, rank=rank, steps=steps)
    d_in, hidden, d_out = int(dims[0]), [int(h) for h in dims[1:-1]], int(dims[-1])
    root = K.key(seed)
    init = MLP.rand_init(K.fold_in(root, 0), d_in, d_out, hidden, True, "relu", "float32")
    keys = simple_es_tree_key(init.params, K.fold_in(root, 1), init.scan_map)
    leaves, es_map, key_of = flatten(init.params), flatten(init.es_map), flatten(keys)
    noise_log2_size = noise_table_log2(leaves, max(c[1] for c in cases), noise_log2_size)
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(d_out).astype(np.float32)
    out = {"meta/set": np.array("npegg"), "meta/in_dim": np.int32(d_in), "meta/hidden_dims": np.array(hidden, np.int32),
           "meta/out_dim": np.int32(d_out), "meta/pop": np.int32(pop), "meta/activation": np.array("relu"),
           "meta/model_seed": np.int32(seed), "meta/target": target,
           "meta/cases": np.array([c[0] for c in cases]), "meta/noise_table": np.array("npegg.noise.NoiseTable"),
           "meta/noise_seed": np.int32(noise_seed), "meta/noise_log2_size": np.int32(noise_log2_size)}
    for leaf in leaves:
        out[f"param0/{leaf}"] = leaves[leaf]
        out[f"es_map/{leaf}"] = np.int32(es_map[leaf])
        out[f"key/{leaf}"] = key_of[leaf]
    table = NoiseTable(seed=noise_seed, log2_size=noise_log2_size)
    for name, rank, group, opt, lr, steps, freeze, reuse in cases:
        out.update({f"{name}/rank": np.int64(rank), f"{name}/group": np.int64(group), f"{name}/lr": np.float64(lr),
                    f"{name}/sigma": np.float64(sigma), f"{name}/steps": np.int64(steps),
                    f"{name}/noise_reuse": np.int64(reuse), f"{name}/opt": np.array(opt),
                    f"{name}/freeze_nonlora": np.bool_(freeze)})
        frozen, nparams = EggRoll.init_noiser(init.params, sigma, lr, solver=opt, rank=rank, group_size=group,
                                              freeze_nonlora=freeze, noise_reuse=reuse, noise=table)
        params = init.params
        for k in range(steps):
            out.update(_step(f"{name}/step{k}/", k, pop, frozen, nparams, init, params, keys, target, rng))
            fit = out[f"{name}/step{k}/fitness"]
            info = (np.full(pop, k), np.arange(pop))
            grads = EggRoll.estimate_grads(frozen, nparams, params, keys, fit, info, init.es_map)
            nparams, params = EggRoll.do_updates(frozen, nparams, params, keys, fit, info, init.es_map)
            for leaf, g in flatten(grads).items():
                out[f"{name}/step{k}/grad/{leaf}"] = g
            for leaf, p in flatten(params).items():
                out[f"{name}/step{k}/new/{leaf}"] = p
            if opt in ("adam", "adamw"):
                st = nparams["opt_state"]
                out[f"{name}/step{k}/adam/count"] = np.int32(st["count"])
                for part in ("mu", "nu"):
                    for leaf, v in flatten(st[part]).items():
                        out[f"{name}/step{k}/adam/{part}/{leaf}"] = v
    out.update(_units(table, key_of["0/weight"], leaves["0/weight"].shape, rng))
    return save_vectors(path, out, write=write)


def _step(pre, epoch, pop, frozen, nparams, init, params, keys, target, rng) -> dict:
    """Inputs, outputs and the noise of one step, recorded before its update."""
    members = np.arange(pop)
    info = (epoch, members)
    x = rng.standard_normal((pop, flatten(params)["0/weight"].shape[1])).astype(np.float32)
    fwd = lambda it: MLP.forward(EggRoll, frozen, nparams, init.frozen_params, params, keys, it, x)
    y = fwd(info)
    raw = -((y - target) ** 2).sum(axis=1)
    rec = {pre + "epoch": np.int32(epoch), pre + "threads": members.astype(np.int32), pre + "x": x, pre + "y": y,
           pre + "y_unperturbed": fwd(None), pre + "raw_scores": raw,
           pre + "fitness": EggRoll.convert_fitnesses(frozen, nparams, raw).astype(np.float32)}
    sigma = nparams["sigma"]
    for leaf, p in flatten(params).items():
        rec[pre + f"param/{leaf}"] = p
        key, t = flatten(keys)[leaf], leaf.split("/")[0]
        if flatten(init.es_map)[leaf] == MM_PARAM:
            a, b = get_lora_update_params(frozen, sigma, info, p.shape, key)
            xin = rng.standard_normal((pop, p.shape[1])).astype(np.float32)
            rec.update({pre + f"noise/{leaf}/A": a, pre + f"noise/{leaf}/B": np.array(b), pre + f"mm/{leaf}/x": xin,
                        pre + f"mm/{leaf}/out": EggRoll.do_mm(frozen, nparams, p, key, info, xin),
                        pre + f"mm/{leaf}/out_unperturbed": EggRoll.do_mm(frozen, nparams, p, key, None, xin)})
        else:
            rec[pre + f"noise/{leaf}/E"] = get_nonlora_update_params(frozen, sigma, info, p.shape, key)
            std = EggRoll.get_noisy_standard(frozen, nparams, p, key, info)
            rec[pre + f"standard/{t}/bias"] = np.broadcast_to(std, (pop,) + p.shape).copy()
    return rec


def _units(table, key, shape, rng) -> dict:
    """Fitness conversion on spread-out groups, and which epochs share noise under noise_reuse."""
    raw = (rng.standard_normal(24) * np.repeat([1.0, 10.0, 0.1], 8) + np.repeat([0.0, 50.0, -5.0], 8))
    raw = raw.astype(np.float32)
    rec = {"fitness_unit/raw": raw, "fitness_unit/const_raw": np.full(8, 3.0, np.float32)}
    for g in (0, 4, 2):
        frozen, nparams = EggRoll.init_noiser({}, 1.0, 0.1, group_size=g)
        rec[f"fitness_unit/g{g}"] = EggRoll.convert_fitnesses(frozen, nparams, raw).astype(np.float32)
    frozen, nparams = EggRoll.init_noiser({}, 1.0, 0.1)
    rec["fitness_unit/const_g0"] = EggRoll.convert_fitnesses(frozen, nparams, rec["fitness_unit/const_raw"])
    rec["noise_reuse_unit/epochs"] = np.arange(7, dtype=np.int32)
    rec["noise_reuse_unit/thread"] = np.int32(3)
    for nr in range(4):
        rec[f"noise_reuse_unit/nr{nr}/A"] = np.stack(
            [table.lowrank(key, e, np.array([3]), shape, 1, nr)[0][0] for e in range(7)])
    return rec
