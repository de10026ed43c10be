"""Golden vectors of npegg's own int8 computations, in the format of ``shared/parity``.

npegg is an oracle: a JAX, PyTorch, C or GPU backend of the int8 EGG model and Q-EGGROLL can
check itself against it bit for bit. ``export_int8_vectors(out_dir)`` writes

- ``egg_fwd_<name>.npz``: parameters, an unperturbed forward (``base/``) and a perturbed
  population forward (``pert/``) with logits, states, ll, loss sums, and the exact noise every
  member used (``noise/<leaf>/{A,B,E,start,start_clamped,sign,K0,key,es_type}``);
- ``qegg_update_<name>.npz``: cases of one Q-EGGROLL update whose raw scores come from a real
  perturbed forward: fitness, threshold, the even members' noise, Z and the new params.

The keys, dtypes and shapes are those of ``shared/parity/README.md``, so the same tests read
both. Differences, all recorded in ``meta/``: the noise comes from npegg's
``Int8NoiseTable`` (``meta/noise_table``, ``meta/noise_seed``, ``meta/noise_log2_size``; the
table's generator is specified in ``npegg.noise``), so start indices are taken modulo
2^noise_log2_size instead of 2³⁰ and clamped to that table's end; the model's initial normals
come from ``keys.rng_from_key``, not ``jax.random.normal``; and no ``trace_*`` groups are
written. A reader that only injects the recorded noise needs none of this.

Usage::

    from npegg.oracle.int8_vectors import export_int8_vectors
    paths = export_int8_vectors("vectors/")         # a few small files, a second or two

Mirrors: the harness that produced ``shared/parity`` (format only).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import keys as K
from .. import noise
from ..int8 import qes
from ..models.base_model import EMB_PARAM, MM_PARAM, PARAM, simple_es_tree_key
from ..models.egg import EGG, generate
from ..noiser.qeggroll import QEggRoll, get_lora_update_params, get_nonlora_update_params, signs
from ..tree import flatten, unflatten
from .vectorfile import noise_table_log2, save_vectors

#: (name, settings) of the forward files ``export_int8_vectors`` writes by default.
FWD_CONFIGS = (
    ("h16_l1_init", dict(hidden=16, n_layer=1, T=24, sigma_shift=4, noise_reuse=1, epoch=3, param_kind="init")),
    ("h32_l2_adv", dict(hidden=32, n_layer=2, T=16, sigma_shift=2, noise_reuse=2, epoch=5, param_kind="adv")),
)
#: Update cases: (name, pop, use_clt, epoch, alpha, noise_reuse, update_batch_size).
UPDATE_CASES = (
    ("u0", 8, True, 0, 4.0, 1, 4),        # threshold 0: every entry moves, Z = 0 moves down
    ("u1", 8, False, 100, 4.0, 1, 2),
    ("u2", 16, True, 30, 4.0, 2, 4),
    ("u3", 16, False, 7, 0.5, 0, 8),      # constant α
)


def adversarial_params(params, rng) -> dict:
    """Uniform int8 in [−127, 127], 25 % at ±127, 5 % at 0; LN weights and biases may be negative.

    Embedding row 7 is all 0 and row 13 has Σ|x| < H (LN abs-mean 0); row 200 is all ±127.
    """
    def adv(p):
        v = rng.integers(-127, 128, p.shape)
        u = rng.random(p.shape)
        v = np.where(u < 0.25, 127 * rng.choice([-1, 1], p.shape), np.where(u < 0.30, 0, v))
        return v.astype(np.int8)
    flat = {k: adv(v) for k, v in flatten(params).items()}
    emb = flat["emb"]
    h = emb.shape[1]
    emb[7] = 0
    emb[13] = 0
    emb[13, : max(1, h // 4)] = rng.choice([-1, 1], max(1, h // 4))      # Σ|x| = H/4 < H
    emb[200] = 127 * rng.choice([-1, 1], h)
    return unflatten(flat)


def noise_records(frozen, params, es_tree_key, es_map, epoch: int, members, log2_size: int) -> dict:
    """``noise/<leaf>/*`` arrays for the given members (README "Noise records")."""
    members = np.asarray(members, dtype=np.int64)
    size_n = 1 << log2_size
    reuse, rank = frozen["noise_reuse"], frozen["rank"]
    te = 0 if reuse == 0 else epoch // reuse
    kinds, flat, keys = flatten(es_map), flatten(params), flatten(es_tree_key)
    out = {}
    for leaf, kind in kinds.items():
        key = np.asarray(keys[leaf])
        stacked = key.ndim == 2
        per_layer = []
        for k in (key if stacked else key[None]):
            shape = flat[leaf].shape[1:] if stacked else flat[leaf].shape
            start = noise.start_indices(k, epoch, members, reuse, size_n)                   # (P,)
            rec = {"start": start, "K0": K.fold_in(k, te)[0]}
            if kind in (MM_PARAM, EMB_PARAM):
                rec["A"], rec["B"] = get_lora_update_params(frozen, (epoch, members), shape, k)
                size = (shape[0] + shape[1]) * rank
            elif kind == PARAM:
                rec["E"] = get_nonlora_update_params(frozen, (epoch, members), shape, k)
                size = 2 * int(np.prod(shape))
            rec["start_clamped"] = np.minimum(start, size_n - size)
            per_layer.append(rec)
        for name in per_layer[0]:
            arr = np.stack([r[name] for r in per_layer], axis=1 if name != "K0" else 0)
            out[f"noise/{leaf}/{name}"] = arr if stacked else arr[:, 0] if name != "K0" else arr[0]
        for name, dt in (("start", np.int32), ("start_clamped", np.int32), ("K0", np.uint32)):
            out[f"noise/{leaf}/{name}"] = out[f"noise/{leaf}/{name}"].astype(dt)
        out[f"noise/{leaf}/key"] = key.astype(np.uint32)
        out[f"noise/{leaf}/sign"] = signs(members).astype(np.int32)
        out[f"noise/{leaf}/es_type"] = np.int32(kind)
    return out


def _streams(rng, n, length, vocab):
    """(n, length + 1) uint8 byte streams with frequent 0 bytes (document starts)."""
    s = rng.integers(0, vocab, (n, length + 1))
    s[rng.random(s.shape) < 0.08] = 0
    return s.astype(np.uint8)


def _model(model_seed, vocab, n_layer, hidden, param_kind, rng):
    _, params, scan_map, es_map = EGG.rand_init(K.fold_in(K.key(model_seed), 0), hidden, n_layer, vocab)
    if param_kind == "adv":
        params = adversarial_params(params, rng)
    keys = simple_es_tree_key(params, K.fold_in(K.key(model_seed), 1), scan_map)
    return params, es_map, keys


def _common_meta(model_seed, noise_seed, log2_size, vocab, n_layer, hidden, rank):
    return {"meta/set": np.str_("npegg"), "meta/model_seed": np.int32(model_seed),
            "meta/noise_seed": np.int32(noise_seed), "meta/noise_table": np.str_("npegg.Int8NoiseTable"),
            "meta/noise_log2_size": np.int32(log2_size), "meta/hidden": np.int32(hidden),
            "meta/n_layer": np.int32(n_layer), "meta/vocab": np.int32(vocab), "meta/rank": np.int32(rank)}


def _tree_arrays(prefix, tree, dtype=None) -> dict:
    return {f"{prefix}/{k}": (np.asarray(v, dtype) if dtype else v) for k, v in flatten(tree).items()}


def export_egg_fwd(path, *, hidden=16, n_layer=1, T=24, vocab=256, rank=1, sigma_shift=4, noise_reuse=1,
                   epoch=3, param_kind="init", model_seed=11, noise_seed=0, noise_log2_size=16,
                   members=(0, 1, 2, 3, 6, 7, 131072, 131073), seed=0, write=None) -> Path:
    """Write one ``egg_fwd``-format file: base and perturbed forward with the noise used.

    members: the perturbed members' ids (the file format calls them ``threads``, as the reference does).
    """
    rng = np.random.default_rng(seed)
    params, es_map, keys = _model(model_seed, vocab, n_layer, hidden, param_kind, rng)
    noise_log2_size = noise_table_log2(flatten(params), rank, noise_log2_size)
    table = noise.Int8NoiseTable(seed=noise_seed, log2_size=noise_log2_size)
    members = np.asarray(members, dtype=np.int64)
    emb_size = (vocab + hidden) * rank                                    # add members whose emb slice clamps
    q = np.setdiff1d(np.arange(1 << 17), members >> 1)
    st = noise.start_indices(flatten(keys)["emb"], epoch, 2 * q, noise_reuse, table.size)
    clamp = 2 * q[st > table.size - emb_size][:1]                         # one pair, if any in range
    members = np.concatenate([members, clamp, clamp + 1])
    frozen, nparams = QEggRoll.init_noiser(params, sigma_shift, noise=table, noise_reuse=noise_reuse, rank=rank)

    out = {**_common_meta(model_seed, noise_seed, noise_log2_size, vocab, n_layer, hidden, rank),
           "meta/T": np.int32(T), "meta/param_kind": np.str_(param_kind), "meta/sigma_shift": np.int32(sigma_shift),
           "meta/noise_reuse": np.int32(noise_reuse), "meta/epoch": np.int32(epoch), "meta/FBIT": np.int32(4),
           "meta/clamp_threads": np.concatenate([clamp, clamp + 1]).astype(np.int32),
           **_tree_arrays("param", params), **_tree_arrays("es_map", es_map, np.int32)}
    s = _streams(rng, 1, T, vocab)[0]
    state0 = rng.integers(-127, 128, (n_layer, hidden)).astype(np.int8)
    base = generate(QEggRoll, frozen, nparams, None, params, keys, None, s[None, :-1], s[None, 1:], state0[None],
                    record=True)
    out.update({"base/tokens_in": s[:-1], "base/tokens_tgt": s[1:], "base/state0": state0,
                "base/logits": base.logits[0], "base/state": base.states[0], "base/ll": base.ll[0],
                "base/loss_sum": base.loss_sum[0], "base/final_state": base.final_state[0]})
    streams = np.repeat(_streams(rng, (len(members) + 1) // 2, T, vocab), 2, axis=0)[: len(members)]
    state0 = rng.integers(-127, 128, (len(members), n_layer, hidden)).astype(np.int8)
    pert = generate(QEggRoll, frozen, nparams, None, params, keys, (epoch, members), streams[:, :-1],
                    streams[:, 1:], state0, record=True)
    out.update({"pert/threads": members.astype(np.int32), "pert/epoch": np.int32(epoch),
                "pert/tokens_in": streams[:, :-1], "pert/tokens_tgt": streams[:, 1:], "pert/state0": state0,
                "pert/logits": pert.logits, "pert/state": pert.states, "pert/ll": pert.ll,
                "pert/loss_sum": pert.loss_sum, "pert/final_state": pert.final_state})
    out.update(noise_records(frozen, params, keys, es_map, epoch, members, noise_log2_size))
    return save_vectors(path, out, write=write)


def export_qegg_update(path, *, hidden=16, n_layer=2, T=12, vocab=256, rank=1, sigma_shift=4, cases=UPDATE_CASES,
                       model_seed=31, noise_seed=0, noise_log2_size=16, seed=1, write=None) -> Path:
    """Write one ``qegg_update``-format file; raw scores come from a perturbed forward."""
    rng = np.random.default_rng(seed)
    params, es_map, keys = _model(model_seed, vocab, n_layer, hidden, "init", rng)
    flat = flatten(params)
    for leaf, v in flat.items():                                           # push some entries to the clip
        u = rng.random(v.shape)
        v[u < 0.07] = 127
        v[(u >= 0.07) & (u < 0.14)] = -126
    noise_log2_size = noise_table_log2(flat, rank, noise_log2_size)
    table = noise.Int8NoiseTable(seed=noise_seed, log2_size=noise_log2_size)
    out = {**_common_meta(model_seed, noise_seed, noise_log2_size, vocab, n_layer, hidden, rank),
           "meta/cases": np.array([c[0] for c in cases]), **_tree_arrays("param", params),
           **_tree_arrays("es_map", es_map, np.int32)}
    for name, pop, use_clt, epoch, alpha, reuse, ubs in cases:
        frozen, nparams = QEggRoll.init_noiser(params, sigma_shift, noise=table, noise_reuse=reuse, rank=rank,
                                               use_clt=use_clt, alpha=alpha, update_chunk=ubs)
        members = np.arange(pop)
        streams = np.repeat(_streams(rng, pop // 2, T, vocab), 2, axis=0)
        state0 = np.zeros((pop, n_layer, hidden), np.int8)
        raw = generate(QEggRoll, frozen, nparams, None, params, keys, (epoch, members), streams[:, :-1],
                       streams[:, 1:], state0).loss_sum
        raw[2:4] = raw[2]                                                  # one exact tie
        fitness = QEggRoll.convert_fitnesses(frozen, nparams, raw)
        info = (np.full(pop, epoch, np.int32), members.astype(np.int32))
        z = QEggRoll.votes(frozen, nparams, params, keys, fitness, info, es_map)
        _, new = QEggRoll.do_updates(frozen, nparams, params, keys, fitness, info, es_map)
        c = {"pop": np.int32(pop), "raw_scores": raw, "fitness": fitness, "iter_epochs": info[0],
             "iter_threads": info[1], "update_threshold": np.int32(QEggRoll.threshold(frozen, nparams, epoch)),
             "alpha_arg": np.float64(alpha), "alpha_t": np.float64(qes.alpha_schedule(alpha, epoch)),
             "use_clt": np.bool_(use_clt), "fast_fitness": np.bool_(True), "noise_reuse": np.int32(reuse),
             "update_batch_size": np.int32(ubs), "epoch": np.int32(epoch),
             **noise_records(frozen, params, keys, es_map, epoch, members[::2], noise_log2_size),
             **_tree_arrays("Z", z), **_tree_arrays("new", new)}
        out.update({f"{name}/{k}": v for k, v in c.items()})
    return save_vectors(path, out, write=write)


def export_int8_vectors(out_dir, *, noise_log2_size: int = 16, width=None, layers=None, seq_len=None, rank=None,
                        pop=None, write=None) -> list[Path]:
    """Write the default set of int8 golden vectors into ``out_dir`` (created if missing).

    Returns the paths: one ``egg_fwd_<name>.npz`` per entry of ``FWD_CONFIGS`` and
    ``qegg_update_npegg.npz`` with the ``UPDATE_CASES``. ``width`` (H), ``layers`` (L),
    ``seq_len`` (T) and ``rank`` replace every file's own; ``pop`` gives the forwards members
    0 … pop−1 (plus a pair whose slice clamps) and every update case pop members; ``write`` as in
    ``vectorfile.save_vectors``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = {k: v for k, v in (("hidden", width), ("n_layer", layers), ("T", seq_len), ("rank", rank)) if v}
    members = {"members": tuple(range(pop))} if pop else {}
    paths = []
    for i, (name, cfg) in enumerate(FWD_CONFIGS):
        cfg = {**cfg, **shape, **members}
        name = f"h{cfg['hidden']}_l{cfg['n_layer']}_{cfg['param_kind']}"          # FWD_CONFIGS' names by default
        paths.append(export_egg_fwd(out_dir / f"egg_fwd_{name}.npz", noise_log2_size=noise_log2_size, seed=i,
                                    write=write, **cfg))
    cases = tuple((c[0], pop or c[1]) + c[2:] for c in UPDATE_CASES)
    paths.append(export_qegg_update(out_dir / "qegg_update_npegg.npz", noise_log2_size=noise_log2_size, write=write,
                                    cases=cases, **shape))
    return paths
