"""Round trip of the float language-model vectors: npegg's export passes npegg's own check.

``check_float_lm`` replays a ``float_lm_<cell>.npz`` file (docs/vectors.md) through npegg with
the recorded noise injected, the recorded params, state and fitness fed to every generation, and
compares every recorded output within the file's tolerance.
"""
import numpy as np
import pytest

from npegg import keys as K
from npegg.models.lm import ByteLM
from npegg.noise import InjectedNoise
from npegg.noiser import EggRoll
from npegg.oracle.lm_vectors import SETTINGS, export_lm_vectors
from npegg.tree import flatten, unflatten
from parity import group, load


def _unit_noise(v, pre, leaves, members, sigma, rank):
    """InjectedNoise of unit factors, one record per (leaf, layer) key, from the scaled records."""
    sign = np.where(members % 2 == 0, 1.0, -1.0)
    recs = {}
    for leaf in leaves:
        key = v["key/" + leaf]
        n = group(v, pre + "noise/" + leaf)
        for l, kl in enumerate([key] if key.ndim == 1 else list(key)):
            pick = (lambda a: a) if key.ndim == 1 else (lambda a, l=l: a[:, l])
            if "A" in n:
                a = pick(n["A"]) / (sign * sigma / np.sqrt(rank))[:, None, None]
                recs[kl.tobytes()] = {"members": members, "A": a.astype(np.float32), "B": pick(n["B"])}
            elif "E" in n:
                e = pick(n["E"])
                recs[kl.tobytes()] = {"members": members,
                                      "E": (e / (sign * sigma).reshape((-1,) + (1,) * (e.ndim - 1))).astype(np.float32)}
    return InjectedNoise(recs)


def check_float_lm(path):
    """Every generation of one float_lm file; returns the number of arrays compared."""
    v = load(path)
    rtol, atol = float(v["meta/rtol"]), float(v["meta/atol"])
    meta = {k: v["meta/" + k].item() for k in ("hidden_dim", "n_layers", "rank", "group_size", "noise_reuse",
                                                "sigma", "lr", "steps", "T")}
    cell = str(v["meta/cell"])
    skeleton = ByteLM.rand_init(K.key(0), meta["hidden_dim"], meta["n_layers"], cell=cell)  # frozen_params only
    leaves = sorted(k[len("param0/"):] for k in v if k.startswith("param0/"))
    es_map = unflatten({leaf: int(v["es_map/" + leaf]) for leaf in leaves})
    keys = unflatten({leaf: v["key/" + leaf] for leaf in leaves})
    compared = 0

    def close(got, key):
        nonlocal compared
        np.testing.assert_allclose(got, v[key], rtol, atol, err_msg=f"{path.name}: {key}")
        compared += 1
    for k in range(meta["steps"]):
        pre = f"step{k}/"
        members, epoch = v[pre + "members"].astype(np.int64), int(v[pre + "epoch"])
        params = unflatten({leaf: v[pre + "param/" + leaf] for leaf in leaves})
        frozen, nparams = EggRoll.init_noiser(
            params, meta["sigma"], meta["lr"], solver=str(v["meta/optimizer"]), rank=meta["rank"],
            group_size=meta["group_size"], noise_reuse=meta["noise_reuse"],
            noise=_unit_noise(v, pre, leaves, members, meta["sigma"], meta["rank"]))
        if k > 0:
            prev = group(v, f"step{k - 1}/opt")
            nparams["opt_state"] = {"count": prev["count"], **{part: unflatten(group(prev, part))
                                                               for part in ("mu", "nu", "trace") if group(prev, part)}}
        tin, tgt, state0 = v[pre + "tokens_in"], v[pre + "tokens_tgt"], v[pre + "state0"]

        def fwd(info, *args, **kw):
            return ByteLM.forward(EggRoll, frozen, nparams, skeleton.frozen_params, params, keys, info, *args, **kw)
        for kind, info in (("plain", None), ("pert", (epoch, members))):
            logits, final = fwd(info, tin, state0)                      # the whole chunk at once
            close(logits, pre + f"{kind}/logits")
            close(final, pre + f"{kind}/final_state")
            s = state0
            for t in range(tin.shape[1]):                               # and step by step
                _, s = fwd(info, tin[:, t:t + 1], s)
                np.testing.assert_allclose(s, v[pre + f"{kind}/state"][:, t], rtol, atol, err_msg=f"state t={t}")
            compared += 1
            ll, _ = fwd(info, tin, state0, targets=tgt)
            close(ll, pre + f"{kind}/ll")
        np.testing.assert_allclose(v[pre + "pert/ll"].sum(axis=1, dtype=np.float64), v[pre + "raw_scores"], 1e-12)
        close(EggRoll.convert_fitnesses(frozen, nparams, v[pre + "raw_scores"]), pre + "fitness")
        info = (np.full(members.size, epoch), members)
        fit = v[pre + "fitness"]                                        # the recorded one: no compounding
        grads = flatten(EggRoll.estimate_grads(frozen, nparams, params, keys, fit, info, es_map))
        new_state, new = EggRoll.do_updates(frozen, nparams, params, keys, fit, info, es_map)
        for leaf in leaves:
            close(grads[leaf], pre + "grad/" + leaf)
            close(flatten(new)[leaf], pre + "new/" + leaf)
        opt = group(v, pre + "opt")
        assert int(new_state["opt_state"]["count"]) == int(opt["count"])
        for name, want in opt.items():
            if name != "count":
                part, leaf = name.split("/", 1)
                # moments are sums of tiny numbers: absolute error relative to the array's scale
                np.testing.assert_allclose(flatten(new_state["opt_state"][part])[leaf], want, rtol,
                                           atol * np.abs(want).max(), err_msg=f"{path.name}: {pre}opt/{name}")
    return compared


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_lm_vectors(tmp_path_factory.mktemp("lm"))


@pytest.mark.parametrize("index", [0, 1], ids=["egg", "mingru"])
def test_exported_lm_vectors_pass_the_check(exported, index):
    path = exported[index]
    assert check_float_lm(path) >= 10 * SETTINGS["steps"]


def test_lm_vectors_hold_what_a_port_needs(exported):
    """Not trivial: noise moves the outputs, pairs are antithetic, resets happen, params move, and
    the file records a noise factor for every perturbed leaf of every layer."""
    v = load(exported[0])
    assert not np.allclose(v["step0/pert/logits"], v["step0/plain/logits"], atol=1e-3)
    a = v["step0/noise/blocks/att/Wf/A"]                                # (P, L, D, r)
    assert a.shape[:2] == (SETTINGS["pop"], SETTINGS["n_layers"])
    np.testing.assert_array_equal(a[0], -a[1])
    assert (v["step0/tokens_in"] == 0).any()
    assert not np.array_equal(v["step1/param/head"], v["param0/head"])
    np.testing.assert_array_equal(v["step1/state0"], v["step0/pert/final_state"])
    leaves = {k[len("param0/"):] for k in v if k.startswith("param0/")}
    recorded = {k[len("step0/noise/"):].rsplit("/", 1)[0] for k in v if k.startswith("step0/noise/")}
    assert recorded == leaves


def test_a_wrong_number_is_caught(exported, tmp_path):
    """The check is not vacuous: one logit moved by 1e-3 fails it."""
    v = load(exported[1])
    v["step1/pert/logits"][3, 5, 17] += 1e-3
    bad = tmp_path / "float_lm_bad.npz"
    np.savez_compressed(bad, **v)
    with pytest.raises(AssertionError, match="step1/pert/logits"):
        check_float_lm(bad)


def test_export_is_the_same_bits_every_time(exported, tmp_path):
    """Same machine, same NumPy/BLAS build, same threads: identical files (docs/determinism.md)."""
    again = export_lm_vectors(tmp_path, cells=("mingru",))[0]
    a, b = load(exported[1]), load(again)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
