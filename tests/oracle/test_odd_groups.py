"""Odd group sizes and odd populations: the reference's numbers, with one AntitheticSplitWarning.

HyperscaleES's ``convert_fitnesses`` reshapes the scores into groups of any size that divides the
population, odd ones included. The cases here are written in the ``float_eggroll`` format
(``fitness_unit/raw`` and ``fitness_unit/g<k>``) from a formula implemented in this file, one
member at a time in float64, and are checked by the same function as the reference's own file.
The formula is first checked against the reference's even group sizes.
"""
import warnings

import numpy as np
import pytest

from npegg import fitness as F
from npegg.es import ES
from npegg.models import MLP
from npegg.noiser import EggRoll
from parity import REFERENCE_DIR, load
from test_float_parity import FIT_ATOL, FIT_RTOL, check_fitness_units


def grouped_zscore(raw, g):
    """f_n = (R_n − mean of n's group) / √(var of all R + 1e-5), one member at a time, float64."""
    r = [float(x) for x in raw]
    p = len(r)
    g = g or p
    mean_all = sum(r) / p
    var_all = sum((x - mean_all) ** 2 for x in r) / p
    out = []
    for n in range(p):
        lo = (n // g) * g
        mean_group = sum(r[lo:lo + g]) / g
        out.append((r[n] - mean_group) / (var_all + 1e-5) ** 0.5)
    return np.array(out, np.float32)


def _case(raw, sizes):
    """A fitness_unit group as the float_eggroll format keys it (the rest of a file is not needed)."""
    raw = np.asarray(raw, np.float32)
    arrays = {"fitness_unit/raw": raw, "fitness_unit/const_raw": np.full(raw.size, 2.5, np.float32),
              "fitness_unit/const_g0": np.zeros(raw.size, np.float32)}
    arrays |= {f"fitness_unit/g{g}": grouped_zscore(raw, g) for g in sizes}
    return arrays


def test_the_formula_is_the_references():
    """The independent formula reproduces the reference's grouped z-scores (g = 0, 2, 4)."""
    u = {k[len("fitness_unit/"):]: v for k, v in load(REFERENCE_DIR / "float_eggroll.npz").items()
         if k.startswith("fitness_unit/")}
    for name in ("g0", "g2", "g4"):
        np.testing.assert_allclose(grouped_zscore(u["raw"], int(name[1:])), u[name], FIT_RTOL, FIT_ATOL)


@pytest.mark.parametrize("pop, sizes", [(24, [1, 3, 0, 2, 6, 8]), (30, [1, 3, 5, 15, 10]), (15, [0, 1, 3, 5, 15])],
                         ids=["P24", "P30", "P15_odd_population"])
def test_odd_group_sizes_match_the_reference_formula(pop, sizes):
    """Computed float_eggroll-format cases, checked like the reference's file; the reference's
    raw scores (groups with very different means and spreads) are reused where P = 24."""
    if pop == 24:
        raw = load(REFERENCE_DIR / "float_eggroll.npz")["fitness_unit/raw"]
    else:
        rng = np.random.default_rng(pop)
        raw = (rng.standard_normal(pop) * np.repeat(rng.uniform(0.1, 5, pop // 3 or 1), 3)[:pop]
               + np.repeat(rng.uniform(-20, 20, pop // 3 or 1), 3)[:pop])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", F.AntitheticSplitWarning)
        check_fitness_units(_case(raw, sizes))


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in seen if issubclass(w.category, F.AntitheticSplitWarning)]


@pytest.mark.parametrize("pop, group, n_warn", [(24, 3, 1), (24, 1, 1), (15, 0, 1), (15, 5, 1), (24, 4, 0), (24, 0, 0)])
def test_split_pairs_warn_once_per_call(pop, group, n_warn):
    frozen, nparams = EggRoll.init_noiser({}, 0.1, 0.1, group_size=group)
    raw = np.linspace(-1, 1, pop, dtype=np.float32) ** 3
    out, seen = _warnings_of(lambda: EggRoll.convert_fitnesses(frozen, nparams, raw))
    assert len(seen) == n_warn
    np.testing.assert_allclose(out, grouped_zscore(raw, group), FIT_RTOL, FIT_ATOL)
    if n_warn:
        assert "antithetic" in str(seen[0].message)


def test_sizes_the_reference_cannot_reshape_are_refused():
    """Refused like the reference's reshape, before any work, naming the argument."""
    for pop, group in [(24, 5), (24, -2), (0, 0)]:
        with pytest.raises(ValueError, match="group_size|population size"):
            F.zscore(np.zeros(pop), group)


def test_es_loop_runs_an_odd_population_and_odd_groups():
    """ES.create accepts pop 9 with groups of 3 (the reference does); each step warns and moves."""
    es, st = ES.create(MLP, dict(in_dim=2, out_dim=1, hidden_dims=[4]), pop_size=9, sigma=0.1, lr=0.1,
                       group_size=3)
    x = np.ones((9, 2), np.float32)
    raw = -es.forward(st, x)[:, 0] ** 2
    new, seen = _warnings_of(lambda: es.step(st, raw))
    assert len(seen) == 1 and new.epoch == 1
    assert not np.array_equal(new.params["0"]["weight"], st.params["0"]["weight"])


def test_the_training_program_keeps_refusing_odd_sizes():
    """npegg train's strict check: pairs must share a group (a setting that cannot train well)."""
    with pytest.raises(ValueError, match="group_size must be even"):
        F.check_population(18, 3)
    with pytest.raises(ValueError, match="even for antithetic"):
        F.check_population(7, 0)
