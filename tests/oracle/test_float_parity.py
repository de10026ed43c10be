"""Float EggRoll against the reference (HyperscaleES eggroll.py + optax), vector by vector.

Each file ``float_eggroll*.npz`` in the parity folder is one test; every case and step in it
is checked: the perturbed MLP forward, per-leaf do_mm and get_noisy_standard, fitness
conversion, the gradient handed to the optimizer, the new params and Adam's state. Noise is
injected from the file (the reference's factors carry sign·σ/√r, which we divide out), and each
step starts from the recorded params so errors do not compound. Tolerances are the README's:
float32 XLA vs NumPy agree to ~1e-6 relative.
"""
import re

import numpy as np
import pytest

from npegg.models import MLP
from npegg.noise import InjectedNoise
from npegg.noiser import EggRoll
from npegg.tree import flatten, unflatten
from parity import group, load, parity_files

RTOL, ATOL = 2e-5, 2e-6          # README: outputs, grads, params
FIT_RTOL, FIT_ATOL = 1e-5, 1e-5  # README: fitnesses


def _injected(v, pre, leaves, members, sigma, rank):
    """Unit-scale noise records from the reference's scaled ones."""
    sign = np.where(members % 2 == 0, 1.0, -1.0)
    recs = {}
    for leaf in leaves:
        kb = v["key/" + leaf].tobytes()
        if int(v["es_map/" + leaf]) == 1:
            a = v[pre + f"noise/{leaf}/A"] / (sign * sigma / np.sqrt(rank))[:, None, None]
            recs[kb] = {"members": members, "A": a.astype(np.float32), "B": v[pre + f"noise/{leaf}/B"]}
        else:
            e = v[pre + f"noise/{leaf}/E"]
            e = e / (sign * sigma).reshape((-1,) + (1,) * (e.ndim - 1))
            recs[kb] = {"members": members, "E": e.astype(np.float32)}
    return InjectedNoise(recs)


@pytest.mark.parametrize("path", parity_files("float_eggroll*.npz"))
def test_float_eggroll_vectors(path):
    check_float_eggroll(path)


def check_float_eggroll(path):
    """Every case and step of one float_eggroll-format file (also used on npegg's own exports)."""
    v = load(path)
    leaves = sorted(k[len("param0/"):] for k in v if k.startswith("param0/"))
    es_map = unflatten({leaf: int(v["es_map/" + leaf]) for leaf in leaves})
    keys = unflatten({leaf: v["key/" + leaf] for leaf in leaves})
    frozen_params = {"activation": str(v["meta/activation"])}
    checked = 0
    for case in v["meta/cases"]:
        c = group(v, str(case))
        sigma, rank = float(c["sigma"]), int(c["rank"])
        steps = sorted({int(m.group(1)) for k in c for m in [re.match(r"step(\d+)/", k)] if m})
        for k in steps:
            pre = f"{case}/step{k}/"
            members = v[pre + "threads"].astype(np.int64)
            epoch = int(v[pre + "epoch"])
            info = (epoch, members)
            params = unflatten({leaf: v[pre + "param/" + leaf] for leaf in leaves})
            frozen, nparams = EggRoll.init_noiser(
                params, sigma, float(c["lr"]), solver=str(c["opt"]), rank=rank, group_size=int(c["group"]),
                noise_reuse=int(c["noise_reuse"]), freeze_nonlora=bool(c["freeze_nonlora"]),
                noise=_injected(v, pre, leaves, members, sigma, rank))
            if str(c["opt"]) == "adam" and k > 0:
                prev = group(v, f"{case}/step{k - 1}/adam")
                nparams["opt_state"] = {"count": prev["count"],
                                        "mu": unflatten(group(prev, "mu")), "nu": unflatten(group(prev, "nu"))}
            fwd = lambda it, x: MLP.forward(EggRoll, frozen, nparams, frozen_params, params, keys, it, x)
            np.testing.assert_allclose(fwd(info, v[pre + "x"]), v[pre + "y"], RTOL, ATOL)
            np.testing.assert_allclose(fwd(None, v[pre + "x"]), v[pre + "y_unperturbed"], RTOL, ATOL)
            for leaf in leaves:
                t = leaf.split("/")[0]
                if leaf.endswith("weight"):
                    mm = group(v, pre + f"mm/{leaf}")
                    w, key = v[pre + "param/" + leaf], v["key/" + leaf]
                    out = EggRoll.do_mm(frozen, nparams, w, key, info, mm["x"])
                    np.testing.assert_allclose(out, mm["out"], RTOL, ATOL)
                    np.testing.assert_allclose(EggRoll.do_mm(frozen, nparams, w, key, None, mm["x"]),
                                               mm["out_unperturbed"], RTOL, ATOL)
                else:
                    std = EggRoll.get_noisy_standard(frozen, nparams, v[pre + "param/" + leaf], v["key/" + leaf], info)
                    np.testing.assert_allclose(np.broadcast_to(std, v[pre + f"standard/{t}/bias"].shape),
                                               v[pre + f"standard/{t}/bias"], RTOL, ATOL)
            fit = EggRoll.convert_fitnesses(frozen, nparams, v[pre + "raw_scores"])
            np.testing.assert_allclose(fit, v[pre + "fitness"], FIT_RTOL, FIT_ATOL)
            # feed the recorded fitness so the update is checked on its own
            iterinfos = (np.full(members.size, epoch), members)
            grads = flatten(EggRoll.estimate_grads(frozen, nparams, params, keys, v[pre + "fitness"], iterinfos, es_map))
            new_state, new = EggRoll.do_updates(frozen, nparams, params, keys, v[pre + "fitness"], iterinfos, es_map)
            new = flatten(new)
            for leaf in leaves:
                np.testing.assert_allclose(grads[leaf], v[pre + "grad/" + leaf], RTOL, ATOL, err_msg=f"{pre}grad/{leaf}")
                np.testing.assert_allclose(new[leaf], v[pre + "new/" + leaf], RTOL, ATOL, err_msg=f"{pre}new/{leaf}")
                assert new[leaf].dtype == v[pre + "new/" + leaf].dtype
            if str(c["opt"]) == "adam":
                adam = group(v, pre + "adam")
                assert int(new_state["opt_state"]["count"]) == int(adam["count"])
                for leaf in leaves:
                    np.testing.assert_allclose(flatten(new_state["opt_state"]["mu"])[leaf], adam["mu/" + leaf], RTOL, ATOL)
                    np.testing.assert_allclose(flatten(new_state["opt_state"]["nu"])[leaf], adam["nu/" + leaf], RTOL, 1e-9)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("path", parity_files("float_eggroll*.npz"))
def test_fitness_unit_vectors(path):
    check_fitness_units(path)


def check_fitness_units(path):
    """The fitness_unit group of a float_eggroll file (a path) or of arrays already in memory (a dict)."""
    v = path if isinstance(path, dict) else load(path)
    u = group(v, "fitness_unit")
    if not u:
        pytest.skip(f"{path.name} has no fitness_unit group")
    for name, arr in u.items():
        m = re.fullmatch(r"g(\d+)", name)
        if m:
            frozen, np_ = EggRoll.init_noiser({}, 1.0, 0.1, group_size=int(m.group(1)))
            np.testing.assert_allclose(EggRoll.convert_fitnesses(frozen, np_, u["raw"]), arr, FIT_RTOL, FIT_ATOL)
    frozen, np_ = EggRoll.init_noiser({}, 1.0, 0.1)
    np.testing.assert_array_equal(EggRoll.convert_fitnesses(frozen, np_, u["const_raw"]), u["const_g0"])
