"""Bad input raises a clear ValueError naming the argument, before any work starts."""
import numpy as np
import pytest

from npegg import fitness as F
from npegg.es import ES
from npegg.models import MLP
from npegg.noiser import EggRoll

MLP_KW = dict(in_dim=2, out_dim=1, hidden_dims=[4])


@pytest.mark.parametrize("kwargs, match", [
    (dict(pop_size=0), "pop_size must be an integer >= 1"),
    (dict(pop_size=8, group_size=3), "group_size 3 does not divide"),
    (dict(pop_size=8, group_size=-2), "group_size must be"),
    (dict(pop_size=12, group_size=6, sigma=0.0), "sigma must be"),
    (dict(pop_size=8, sigma=-1.0), "sigma must be"),
    (dict(pop_size=8, sigma=float("nan")), "sigma must be"),
    (dict(pop_size=8, rank=0), "rank must be an integer >= 1"),
    (dict(pop_size=8, rank=1.5), "rank must be an integer >= 1"),
    (dict(pop_size=8, noise_reuse=-1), "noise_reuse"),
    (dict(pop_size=8, fitness="median"), "fitness must be one of"),
    (dict(pop_size=8, solver="lion"), "solver must be one of"),
    (dict(pop_size=8, lr=-0.1), "lr must be a finite number >= 0"),
])
def test_bad_settings(kwargs, match):
    kw = dict(pop_size=8, sigma=0.1, lr=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        ES.create(MLP, MLP_KW, **kw)


def test_group_size_must_be_even():
    with pytest.raises(ValueError, match="group_size must be even"):
        F.check_population(18, 3)


def test_bad_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        ES.create(MLP, MLP_KW | {"activation": "tanhh"}, pop_size=8, sigma=0.1, lr=0.1)


def test_wrong_population_shapes_and_nonfinite_fitness():
    es, st = ES.create(MLP, MLP_KW, pop_size=8, sigma=0.1, lr=0.1)
    with pytest.raises(ValueError, match="leading axis of size pop_size=8"):
        es.forward(st, np.zeros((6, 2)))
    with pytest.raises(ValueError, match=r"raw_scores must have shape \(8,\)"):
        es.step(st, np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        es.step(st, np.array([0, 1, 2, np.nan, 4, 5, 6, 7.0]))
    with pytest.raises(ValueError, match="fitnesses shape"):
        EggRoll.do_updates(es.frozen_noiser_params, st.noiser_params, st.params, es.es_tree_key, np.zeros(4),
                           (np.zeros(8, int), np.arange(8)), es.es_map)
    with pytest.raises(ValueError, match="members"):
        es.model.forward(es.noiser, es.frozen_noiser_params, st.noiser_params, es.frozen_params, st.params,
                         es.es_tree_key, (0, np.array([0.5, 1.5])), np.zeros((2, 2)))
