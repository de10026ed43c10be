"""The int8 EGG model and QEggRoll against the reference's golden vectors, bit for bit.

- ``egg_fwd_*.npz``: unperturbed and perturbed forward (logits, state per step, ll per step,
  loss sum, final state), the recorded noise injected; plus our start-index derivation
  (leaf keys from the model seed, K0, raw and clamped start).
- ``qegg_update*.npz``: every case of ``meta/cases``: fitness, Z and the updated params.

Every differing array is reported (``parity.stages``), not only the first.

``check_egg_fwd`` and ``check_qegg_update`` take a path, so the export round-trip test
(``test_int8_export.py``) runs the same checks on files npegg wrote itself.
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg import keys as K
from npegg import noise
from npegg.models.common import simple_es_tree_key
from npegg.models.egg import EGG, generate
from npegg.noise import InjectedNoise
from npegg.noiser.qeggroll import QEggRoll
from npegg.tree import flatten, unflatten
from parity import all_pass, exact, group, load, parity_files, stages



def table_size(v: dict) -> int:
    """Length of the noise table the start indices refer to: 2³⁰ for the reference's files,
    2^meta/noise_log2_size for files npegg exported (``npegg.oracle.int8_vectors``)."""
    return 1 << int(v.get("meta/noise_log2_size", 30))


def assert_same(got, want, what=""):
    """Bit-exact: same dtype, same values."""
    got = np.asarray(got)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert np.array_equal(got, want), what


def model_tree(v: dict, prefix: str = "param"):
    """(params, es_map) trees from ``param/<leaf>`` and ``es_map/<leaf>``."""
    leaves = sorted(group(v, prefix))
    return unflatten({l: v[f"{prefix}/{l}"] for l in leaves}), unflatten({l: int(v[f"es_map/{l}"]) for l in leaves})


def injected_noise(rec: dict, members) -> InjectedNoise:
    """A noise source replaying recorded per-leaf noise, per layer for stacked leaves.

    The recorded A and E already carry the antithetic sign; the noiser applies it again, so
    store the unit factors sign · A (sign² = 1) and sign · E.
    """
    members = np.asarray(members)
    sign = np.where(members % 2 == 0, 1, -1)
    records = {}
    leaves = sorted({k.rsplit("/", 1)[0] for k in rec})
    for leaf in leaves:
        g = group(rec, leaf)
        stacked = g["key"].ndim == 2
        for layer in range(g["key"].shape[0] if stacked else 1):
            pick = (lambda a: a[:, layer]) if stacked else (lambda a: a)
            key = (g["key"][layer] if stacked else g["key"]).tobytes()
            if "A" in g:
                a = pick(g["A"]) * sign[:, None, None].astype(np.int8)
                records[key] = {"members": members, "A": a.astype(np.int8), "B": pick(g["B"])}
            else:
                e = pick(g["E"])
                records[key] = {"members": members, "E": (e * sign.reshape((-1,) + (1,) * (e.ndim - 1))).astype(np.int32)}
    return InjectedNoise(records)


def check_start_indices(rec: dict, params, es_tree_key, epoch: int, members, noise_reuse: int, rank: int,
                        size_n: int):
    """Our keys, K0, raw and clamped start indices equal the recorded ones, leaf by leaf."""
    ours = flatten(es_tree_key)
    flat = flatten(params)
    te = 0 if noise_reuse == 0 else epoch // noise_reuse
    for leaf in sorted({k.rsplit("/", 1)[0] for k in rec}):
        g = group(rec, leaf)
        assert np.array_equal(ours[leaf], g["key"]), leaf
        keys_l = g["key"].reshape(-1, 2)
        shape = flat[leaf].shape[1:] if g["key"].ndim == 2 else flat[leaf].shape
        size = (shape[0] + shape[1]) * rank if "A" in g else 2 * int(np.prod(shape))
        start = np.stack([noise.start_indices(k, epoch, members, noise_reuse, size_n) for k in keys_l], -1)
        k0 = np.array([K.fold_in(k, te)[0] for k in keys_l], np.uint32)
        assert np.array_equal(k0.reshape(g["K0"].shape), g["K0"]), leaf
        assert np.array_equal(start.reshape(g["start"].shape), g["start"]), leaf
        assert np.array_equal(np.minimum(start, size_n - size).reshape(g["start"].shape), g["start_clamped"]), leaf
        assert np.array_equal(np.where(np.asarray(members) % 2 == 0, 1, -1), g["sign"]), leaf


# -- egg_fwd ---------------------------------------------------------------------------------------
def check_egg_fwd(path):
    """Unperturbed and perturbed EGG forward of one file, plus the start-index derivation."""
    v = load(path)
    meta = group(v, "meta")
    params, es_map = model_tree(v)
    _, _, scan_map, _ = EGG.rand_init(K.key(0), int(meta["hidden"]), int(meta["n_layer"]), int(meta["vocab"]))
    es_tree_key = simple_es_tree_key(params, K.fold_in(K.key(int(meta["model_seed"])), 1), scan_map)
    for leaf, code in flatten(es_map).items():
        assert int(v[f"noise/{leaf}/es_type"]) == code

    st = stages(path)
    base = group(v, "base")
    frozen, nparams = QEggRoll.init_noiser(params, int(meta["sigma_shift"]), noise=InjectedNoise({}),
                                           noise_reuse=int(meta["noise_reuse"]), rank=int(meta["rank"]))
    out = generate(QEggRoll, frozen, nparams, None, params, es_tree_key, None, base["tokens_in"][None],
                   base["tokens_tgt"][None], base["state0"][None], record=True)
    exact(st, out.logits[0], v, "base/logits")
    exact(st, out.states[0], v, "base/state")
    exact(st, out.ll[0], v, "base/ll")
    exact(st, out.loss_sum[0], v, "base/loss_sum")
    exact(st, out.final_state[0], v, "base/final_state")

    pert = group(v, "pert")
    rec = group(v, "noise")
    threads = pert["threads"].astype(np.int64)
    epoch = int(pert["epoch"])
    check_start_indices(rec, params, es_tree_key, epoch, threads, int(meta["noise_reuse"]), int(meta["rank"]),
                        table_size(v))
    frozen, nparams = QEggRoll.init_noiser(params, int(meta["sigma_shift"]), noise=injected_noise(rec, threads),
                                           noise_reuse=int(meta["noise_reuse"]), rank=int(meta["rank"]))
    out = generate(QEggRoll, frozen, nparams, None, params, es_tree_key, (epoch, threads), pert["tokens_in"],
                   pert["tokens_tgt"], pert["state0"], record=True)
    exact(st, out.logits, v, "pert/logits")
    exact(st, out.states, v, "pert/state")
    exact(st, out.ll, v, "pert/ll")
    exact(st, out.loss_sum, v, "pert/loss_sum")
    exact(st, out.final_state, v, "pert/final_state")
    all_pass(st)


@pytest.mark.parametrize("path", parity_files("egg_fwd_*.npz"))
def test_egg_forward_matches_reference(path):
    """Logits, states, ll, loss sum and final state, unperturbed and perturbed, bit-exact."""
    check_egg_fwd(path)


# -- qegg_update -----------------------------------------------------------------------------------
def check_qegg_update(path):
    """Every case: fitness, threshold from α, start indices, Z and the new params."""
    v = load(path)
    params, es_map = model_tree(v)
    rank = int(v["meta/rank"])
    if "meta/model_seed" in v:
        _, _, scan_map, _ = EGG.rand_init(K.key(0), int(v["meta/hidden"]), int(v["meta/n_layer"]), int(v["meta/vocab"]))
        es_tree_key = simple_es_tree_key(params, K.fold_in(K.key(int(v["meta/model_seed"])), 1), scan_map)
    cases = [str(c) for c in v["meta/cases"]]
    assert cases
    st = stages(path)
    for case in cases:
        c = group(v, case)
        threads = c["iter_threads"].astype(np.int64)
        epochs = c["iter_epochs"]
        even = threads[::2]
        rec = group(c, "noise")
        keys = unflatten({leaf: group(rec, leaf)["key"] for leaf in flatten(es_map)})
        reuse = int(c.get("noise_reuse", 1))   # cases without the key ran with run.py's default, 1
        if "meta/model_seed" in v:
            check_start_indices(rec, params, es_tree_key, int(c["epoch"]), even, reuse, rank, table_size(v))
        frozen, nparams = QEggRoll.init_noiser(
            params, 4, int(c["update_threshold"]), noise=injected_noise(rec, even), noise_reuse=reuse, rank=rank,
            use_clt=bool(c["use_clt"]), fast_fitness=bool(c["fast_fitness"]),
            update_chunk=int(c["update_batch_size"]) if "update_batch_size" in c else None)
        if "alpha_arg" in c:
            sched = dict(frozen, alpha=float(c["alpha_arg"]))
            assert QEggRoll.threshold(sched, {"update_threshold": None}, int(c["epoch"])) == int(c["update_threshold"])
        fitness = QEggRoll.convert_fitnesses(frozen, nparams, c["raw_scores"])
        exact(st, fitness, v, f"{case}/fitness")
        z = flatten(QEggRoll.votes(frozen, nparams, params, keys, c["fitness"], (epochs, threads), es_map))
        _, new = QEggRoll.do_updates(frozen, nparams, params, keys, c["fitness"], (epochs, threads), es_map)
        new = flatten(new)
        for leaf in flatten(es_map):
            exact(st, z[leaf], v, f"{case}/Z/{leaf}")
            exact(st, new[leaf], v, f"{case}/new/{leaf}")
    all_pass(st)


@pytest.mark.parametrize("path", parity_files("qegg_update*.npz"))
def test_qegg_update_matches_reference(path):
    """Z and the ±1-updated params of every case, bit-exact; the slow-fitness case's fitness."""
    check_qegg_update(path)
    v = load(path)
    if "ff0/raw_scores" in v:
        frozen, nparams = QEggRoll.init_noiser({}, 4, 0, noise=InjectedNoise({}), fast_fitness=False)
        assert_same(QEggRoll.convert_fitnesses(frozen, nparams, v["ff0/raw_scores"]), v["ff0/fitness"])
        with pytest.raises(NotImplementedError):
            QEggRoll.do_updates(frozen, nparams, {}, {}, v["ff0/fitness"], (np.zeros(2), np.arange(2)), {})
