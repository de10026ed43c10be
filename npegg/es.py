"""The short high-level loop: population forward → raw scores → fitness → update → evaluation.

    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[64] * 3, activation="pqn"),
                          pop_size=4096, sigma=1.0, lr=0.5, group_size=128, seed=1)
    for epoch in range(1000):
        out = es.forward(state, x_batch)            # (P, …): member p sees its own perturbation
        state = es.step(state, raw_scores(out))     # z-scores → G → optimizer → new params
    y_hat = es.evaluate(state, x_test)              # the unperturbed model

``ES`` holds what never changes (model, noiser, frozen params, es_map, keys, population); an
``ESState`` (params, noiser_params, epoch) is what changes, and ``step`` returns a new one, so any
generation can be replayed from (state, raw scores). ``sigma`` and ``lr`` may be schedules (functions
of the epoch; see ``npegg.optim``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from . import keys as K
from .fitness import check_population
from .models.common import simple_es_tree_key
from .noiser import EggRoll


@dataclass(frozen=True)
class ESState:
    params: Any
    noiser_params: dict
    epoch: int = 0


@dataclass(frozen=True)
class ES:
    model: Any
    noiser: Any
    frozen_params: Any
    es_map: Any
    scan_map: Any
    es_tree_key: Any
    frozen_noiser_params: dict
    pop_size: int
    sigma_schedule: Callable[[int], float] | None = None

    @classmethod
    def create(cls, model, model_kwargs: dict, *, pop_size: int, sigma, lr, noiser=EggRoll, seed: int = 0,
               **noiser_kwargs) -> tuple["ES", ESState]:
        """Initialise the model from ``seed`` (model key fold_in(key(seed), 0), ES keys fold_in(…, 1),
        as the reference notebook) and the noiser; validate the population before any work."""
        check_population(int(pop_size), int(noiser_kwargs.get("group_size", 0)))
        root = K.key(seed)
        frozen_params, params, scan_map, es_map = model.rand_init(K.fold_in(root, 0), **model_kwargs)
        es_tree_key = simple_es_tree_key(params, K.fold_in(root, 1), scan_map)
        schedule = sigma if callable(sigma) else None
        frozen_noiser, noiser_params = noiser.init_noiser(params, schedule(0) if schedule else sigma, lr,
                                                          **noiser_kwargs)
        es = cls(model, noiser, frozen_params, es_map, scan_map, es_tree_key, frozen_noiser, int(pop_size), schedule)
        return es, ESState(params, noiser_params, 0)

    @property
    def members(self) -> np.ndarray:
        """Thread ids 0..P−1: members 2k and 2k+1 are antithetic partners."""
        return np.arange(self.pop_size)

    def _forward(self, state: ESState, iterinfo, *inputs, **kwargs):
        return self.model.forward(self.noiser, self.frozen_noiser_params, state.noiser_params, self.frozen_params,
                                  state.params, self.es_tree_key, iterinfo, *inputs, **kwargs)

    def forward(self, state: ESState, *inputs, **kwargs):
        """Perturbed population forward: every input has a leading axis of size P."""
        for x in inputs:
            if np.ndim(x) == 0 or np.shape(x)[0] != self.pop_size:
                raise ValueError(f"population inputs need a leading axis of size pop_size={self.pop_size}, "
                                 f"got shape {np.shape(x)}")
        return self._forward(state, (state.epoch, self.members), *inputs, **kwargs)

    def evaluate(self, state: ESState, *inputs, **kwargs):
        """The unperturbed model on inputs with any leading batch axes."""
        return self._forward(state, None, *inputs, **kwargs)

    def fitness(self, state: ESState, raw_scores) -> np.ndarray:
        return self.noiser.convert_fitnesses(self.frozen_noiser_params, state.noiser_params, raw_scores)

    def step(self, state: ESState, raw_scores) -> ESState:
        """Fitness shaping, update, and the next epoch's sigma; returns the new state."""
        raw = np.asarray(raw_scores)
        if raw.shape != (self.pop_size,):
            raise ValueError(f"raw_scores must have shape ({self.pop_size},), got {raw.shape}")
        fit = self.fitness(state, raw)
        iterinfos = (np.full(self.pop_size, state.epoch), self.members)
        noiser_params, params = self.noiser.do_updates(self.frozen_noiser_params, state.noiser_params, state.params,
                                                       self.es_tree_key, fit, iterinfos, self.es_map)
        epoch = state.epoch + 1
        if self.sigma_schedule is not None:
            noiser_params = {**noiser_params, "sigma": float(self.sigma_schedule(epoch))}
        return replace(state, params=params, noiser_params=noiser_params, epoch=epoch)
