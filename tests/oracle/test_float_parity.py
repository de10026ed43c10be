"""Float EggRoll against the reference (HyperscaleES eggroll.py + optax), vector by vector.

Each file ``float_eggroll*.npz`` in the parity folder is one test; every case and step in it
is checked: the perturbed MLP forward, per-leaf do_mm and get_noisy_standard, fitness
conversion, the gradient handed to the optimizer, the new params and Adam's state. Noise is
injected from the file (the reference's factors carry sign·σ/√r, which we divide out), and each
step starts from the recorded params so errors do not compound. Tolerances are the README's
(float32 XLA vs NumPy agree to ~1e-6 relative), raised where a result is far smaller than its
terms to the float32 rounding bound of those terms (docs/vectors.md, "Tolerances"); every stage
that differs is reported, not only the first.
"""
import re

import numpy as np
import pytest

from npegg.models import MLP
from npegg.noise import InjectedNoise
from npegg.noiser import EggRoll
from npegg.tree import flatten, unflatten
from parity import all_pass, checker_module, group, load, parity_files, stages

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
    cv, st = checker_module(), stages(path)
    layers = sorted({leaf.split("/")[0] for leaf in leaves}, key=int)
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
            if str(c["opt"]) in ("adam", "adamw") and k > 0:
                prev = group(v, f"{case}/step{k - 1}/adam")
                nparams["opt_state"] = {"count": prev["count"],
                                        "mu": unflatten(group(prev, "mu")), "nu": unflatten(group(prev, "nu"))}
            fwd = lambda it, x: MLP.forward(EggRoll, frozen, nparams, frozen_params, params, keys, it, x)
            p64 = {leaf: v[pre + "param/" + leaf].astype(np.float64) for leaf in leaves}
            noise = {leaf: group(v, pre + "noise/" + leaf) for leaf in leaves}
            freeze, x64 = bool(c["freeze_nonlora"]), v[pre + "x"].astype(np.float64)
            for key, it in (("y", info), ("y_unperturbed", None)):
                terms = cv.mlp_forward(x64, p64, noise, layers, it is not None, freeze)[1]
                st.close(fwd(it, v[pre + "x"]), v, pre + key, RTOL, ATOL, terms)
            for leaf in leaves:
                t = leaf.split("/")[0]
                if leaf.endswith("weight"):
                    mm = group(v, pre + f"mm/{leaf}")
                    w, key = v[pre + "param/" + leaf], v["key/" + leaf]
                    out = EggRoll.do_mm(frozen, nparams, w, key, info, mm["x"])
                    xa, wa = np.abs(mm["x"].astype(np.float64)), np.abs(w.astype(np.float64))
                    A, B = (np.abs(noise[leaf][n].astype(np.float64)) for n in "AB")
                    plain = (xa @ wa.T, w.shape[1] + 2)
                    st.close(out, v, pre + f"mm/{leaf}/out", RTOL, ATOL,
                             (plain[0] + np.einsum("ni,nir,nor->no", xa, B, A), w.shape[1] + rank + 3))
                    st.close(EggRoll.do_mm(frozen, nparams, w, key, None, mm["x"]), v,
                             pre + f"mm/{leaf}/out_unperturbed", RTOL, ATOL, plain)
                else:
                    std = EggRoll.get_noisy_standard(frozen, nparams, v[pre + "param/" + leaf], v["key/" + leaf], info)
                    st.close(np.broadcast_to(std, v[pre + f"standard/{t}/bias"].shape), v, pre + f"standard/{t}/bias",
                             RTOL, ATOL)
            fit = EggRoll.convert_fitnesses(frozen, nparams, v[pre + "raw_scores"])
            st.close(fit, v, pre + "fitness", FIT_RTOL, FIT_ATOL, cv.zscore(v[pre + "raw_scores"], int(c["group"]))[1])
            # feed the recorded fitness so the update is checked on its own
            iterinfos = (np.full(members.size, epoch), members)
            grads = flatten(EggRoll.estimate_grads(frozen, nparams, params, keys, v[pre + "fitness"], iterinfos, es_map))
            new_state, new = EggRoll.do_updates(frozen, nparams, params, keys, v[pre + "fitness"], iterinfos, es_map)
            new = flatten(new)
            f64 = v[pre + "fitness"].astype(np.float64)
            g_terms = {leaf: cv.es_grad(f64, noise[leaf], int(v["es_map/" + leaf]), freeze) for leaf in leaves}
            prev = group(v, f"{case}/step{k - 1}/adam") if k > 0 and str(c["opt"]) != "sgd" else {}
            state = ({"count": int(prev["count"]), "mu": group(prev, "mu"), "nu": group(prev, "nu")} if prev else
                     {"count": 0, "mu": {leaf: 0.0 for leaf in leaves}, "nu": {leaf: 0.0 for leaf in leaves}})
            new_terms = cv.optimizer_step(str(c["opt"]), float(c["lr"]), {l: g[0] for l, g in g_terms.items()},
                                          p64, state)[2]
            for leaf in leaves:
                st.close(grads[leaf], v, pre + "grad/" + leaf, RTOL, ATOL, g_terms[leaf][1])
                st.close(new[leaf], v, pre + "new/" + leaf, RTOL, ATOL, new_terms[leaf])
                assert new[leaf].dtype == v[pre + "new/" + leaf].dtype
            if str(c["opt"]) in ("adam", "adamw"):
                adam = group(v, pre + "adam")
                assert int(new_state["opt_state"]["count"]) == int(adam["count"])
                for leaf in leaves:
                    np.testing.assert_allclose(flatten(new_state["opt_state"]["mu"])[leaf], adam["mu/" + leaf], RTOL, ATOL)
                    np.testing.assert_allclose(flatten(new_state["opt_state"]["nu"])[leaf], adam["nu/" + leaf], RTOL, 1e-9)
            checked += 1
    assert checked > 0
    all_pass(st)


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
