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

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from . import keys as K
from .fitness import check_population
from .models.base_model import check_int, simple_es_tree_key
from .noiser import EggRoll
from .tree import flatten


def _check_keywords(fn, given: dict, what: str) -> None:
    """TypeError naming every keyword in ``given`` that ``fn`` does not declare (its ``**kwargs``
    catch-all, kept for the reference's signature, would otherwise swallow a misspelling)."""
    params = inspect.signature(fn).parameters
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(given) - named)
    if unknown:
        allowed = sorted(named - {"cls", "self", "key", "params", "sigma", "lr"})
        raise TypeError(f"{what} got unknown keyword argument(s) {', '.join(unknown)}; "
                        f"it accepts {', '.join(allowed)}")


def _leaf_specs(params) -> dict:
    """{path: (shape, dtype)} of every leaf: what ``ES.step`` and ``ES.forward`` expect back."""
    return {p: (np.shape(v), np.asarray(v).dtype) for p, v in flatten(params).items()}


@dataclass(frozen=True)
class ESState:
    """What changes during training: params (a tree), noiser_params (σ, optimizer state), epoch."""
    params: Any
    noiser_params: dict
    epoch: int = 0


@dataclass(frozen=True)
class ES:
    """A model, a noiser and their frozen settings: ``create`` builds it, ``forward`` runs the P
    perturbed members, ``step`` turns raw scores (P,) into the next ``ESState``."""
    model: Any
    noiser: Any
    frozen_params: Any
    es_map: Any
    scan_map: Any
    es_tree_key: Any
    frozen_noiser_params: dict
    pop_size: int
    sigma_schedule: Callable[[int], float] | None = None
    leaves: dict | None = None          # {path: (shape, dtype)} of the params ``create`` made
    recipe: dict | None = field(default=None, compare=False, repr=False)   # ``create``'s arguments

    @classmethod
    def create(cls, model, model_kwargs: dict, *, pop_size: int, sigma, lr, noiser=EggRoll, seed: int = 0,
               **noiser_kwargs) -> tuple["ES", ESState]:
        """Initialise the model from ``seed`` (model key fold_in(key(seed), 0), ES keys fold_in(…, 1),
        as the reference notebook) and the noiser; validate the population, the keyword arguments,
        the parameters' dtype and the schedules' first values before any work.

        Any population ≥ 1 and any group size dividing it is accepted, as in the reference; an
        odd one splits antithetic pairs and ``step`` warns (``npegg.fitness.AntitheticSplitWarning``).

        Counts (``pop_size``, ``seed``, ``rank``, ``group_size``, ``noise_reuse``, a model's widths)
        must be Python or NumPy integers: a float, even 8.0, and a bool are refused by name rather
        than truncated. ``sigma`` is a finite number > 0 and ``lr`` one ≥ 0, or either a schedule.
        """
        if not isinstance(model_kwargs, dict):
            raise ValueError(f"model_kwargs must be a dict of {getattr(model, '__name__', model)}.rand_init's "
                             f"keyword arguments, got {model_kwargs!r}")
        _check_arguments(pop_size, sigma, lr, seed, noiser_kwargs)
        _check_keywords(model.rand_init, model_kwargs, f"{getattr(model, '__name__', model)}.rand_init (model_kwargs)")
        _check_keywords(noiser.init_noiser, noiser_kwargs, f"ES.create with {getattr(noiser, '__name__', noiser)}")
        dtype = model_kwargs.get("dtype")
        if dtype is not None and not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(f"model_kwargs dtype={dtype!r}: {getattr(noiser, '__name__', noiser)} perturbs and "
                            f"updates floating-point parameters; use float32 or float64 "
                            f"(the int8 model has its own noiser, npegg.noiser.QEggRoll)")
        # what the reference computes is accepted; odd sizes warn at each fitness (fitness.check_groups)
        check_population(int(pop_size), int(noiser_kwargs.get("group_size", 0)), antithetic=False)
        root = K.key(seed)
        frozen_params, params, scan_map, es_map = model.rand_init(K.fold_in(root, 0), **model_kwargs)
        es_tree_key = simple_es_tree_key(params, K.fold_in(root, 1), scan_map)
        schedule = sigma if callable(sigma) else None
        if schedule is not None:
            _check_sigma_value(schedule(0), 0)
        if callable(lr):
            _check_lr_value(lr(0), 0)
        frozen_noiser, noiser_params = noiser.init_noiser(params, schedule(0) if schedule else sigma, lr,
                                                          **noiser_kwargs)
        recipe = dict(model=model, model_kwargs=model_kwargs, pop_size=pop_size, sigma=sigma, lr=lr, noiser=noiser,
                      seed=seed, **noiser_kwargs)
        es = cls(model, noiser, frozen_params, es_map, scan_map, es_tree_key, frozen_noiser, int(pop_size), schedule,
                 _leaf_specs(params), recipe)
        return es, ESState(params, noiser_params, 0)

    def check_params(self, params) -> None:
        """ValueError naming the first leaf that is missing, extra, or of another shape than ``create`` made."""
        if self.leaves is None:
            return
        given = _leaf_specs(params)
        missing, extra = sorted(set(self.leaves) - set(given)), sorted(set(given) - set(self.leaves))
        if missing:
            raise ValueError(f"params are missing leaves {', '.join(missing[:5])} (the model has {len(self.leaves)})")
        if extra:
            raise ValueError(f"params have leaves the model does not: {', '.join(extra[:5])}")
        for path, (shape, dtype) in self.leaves.items():
            if given[path][0] != shape:
                raise ValueError(f"params leaf {path} has shape {given[path][0]}, the model's is {shape}")
            if not np.issubdtype(given[path][1], np.floating):
                raise ValueError(f"params leaf {path} has dtype {given[path][1]}, the model's is {dtype}")

    def __reduce__(self):
        """An ES pickles as the arguments of ``create`` (its optimizer holds closures, its noise table
        32 MiB): a worker rebuilds the same ES from them, bit for bit."""
        if self.recipe is None:
            raise TypeError("only an ES made by ES.create can be pickled (it is rebuilt from create's arguments)")
        return (_from_recipe, (self.recipe,))

    @property
    def members(self) -> np.ndarray:
        """Thread ids 0..P−1: members 2k and 2k+1 are antithetic partners."""
        return np.arange(self.pop_size)

    def _forward(self, state: ESState, iterinfo, *inputs, **kwargs):
        noise = self.frozen_noiser_params.get("noise") if isinstance(self.frozen_noiser_params, dict) else None
        if iterinfo is not None and hasattr(noise, "gather_for"):
            noise.gather_for(iterinfo[1])           # a model's member chunks then share one draw per leaf
        return self.model.forward(self.noiser, self.frozen_noiser_params, state.noiser_params, self.frozen_params,
                                  state.params, self.es_tree_key, iterinfo, *inputs, **kwargs)

    def forward(self, state: ESState, *inputs, **kwargs):
        """Perturbed population forward: every input has a leading axis of size P."""
        for x in inputs:
            if np.ndim(x) == 0 or np.shape(x)[0] != self.pop_size:
                raise ValueError(f"population inputs need a leading axis of size pop_size={self.pop_size}, "
                                 f"got shape {np.shape(x)}")
        self.check_params(state.params)
        return self._forward(state, (state.epoch, self.members), *inputs, **kwargs)

    def forward_members(self, state: ESState, members, *inputs, **kwargs):
        """Perturbed forward of some members only: members (n,) thread ids, inputs with leading axis n.
        Member m gets exactly the perturbation it gets in ``forward``."""
        members = np.asarray(members)
        if members.ndim != 1 or not np.issubdtype(members.dtype, np.integer) or \
                (members.size and not (0 <= members.min() and members.max() < self.pop_size)):
            raise ValueError(f"members must be a 1-D array of member ids in [0, pop_size={self.pop_size}), "
                             f"got {members.dtype} {members.shape}" + (f" from {members.min()} to {members.max()}"
                                                                       if members.size and members.ndim == 1 else ""))
        for x in inputs:
            if np.ndim(x) == 0 or np.shape(x)[0] != len(members):
                raise ValueError(f"inputs need a leading axis of size len(members)={len(members)}, got {np.shape(x)}")
        self.check_params(state.params)
        return self._forward(state, (state.epoch, members), *inputs, **kwargs)

    def train(self, state: ESState, fitness, epochs: int, *, workers: int = 1, engine: str = "local",
              on_epoch=None, chunk: int | None = None) -> ESState:
        """``epochs`` generations of: raw = fitness over the population; state = step(state, raw).

        ``fitness(es, state, members) -> (n,)`` scores members (thread ids, (n,) int) at ``state``.
        ``workers`` > 1 spreads the members over that many processes (``engine="local"``) or Ray
        actors (``engine="ray"``), which then needs a picklable ``fitness``; the result is the same
        bits for any ``workers`` and engine (``npegg.parallel``). ``on_epoch(state, raw)`` runs
        after each step.
        """
        from .parallel.loop import train
        return train(self, state, fitness, epochs, workers=workers, engine=engine, on_epoch=on_epoch, chunk=chunk)

    def evaluate(self, state: ESState, *inputs, **kwargs):
        """The unperturbed model on inputs with any leading batch axes."""
        return self._forward(state, None, *inputs, **kwargs)

    def fitness(self, state: ESState, raw_scores) -> np.ndarray:
        """The noiser's shaped fitnesses (P,) of raw scores (P,) (z-scores by default)."""
        return self.noiser.convert_fitnesses(self.frozen_noiser_params, state.noiser_params, raw_scores)

    def step(self, state: ESState, raw_scores, rows_seen=None) -> ESState:
        """Fitness shaping, update, and the next epoch's sigma; returns the new state.

        ``rows_seen`` {EMB leaf path: (P, V) bool}: which embedding rows each member's forward read,
        so the update can leave out the noise of rows a member never read (``EggRoll.estimate_grads``;
        the model says which rows, e.g. ``ByteLM.rows_seen``). None: the reference's estimate.
        """
        raw = np.asarray(raw_scores)
        if raw.shape != (self.pop_size,):
            raise ValueError(f"raw_scores must have shape ({self.pop_size},), got {raw.shape}")
        if raw.dtype.kind not in "iuf":
            raise ValueError(f"raw_scores must be numbers (integer or float), got dtype {raw.dtype}")
        check_int("state.epoch", state.epoch, 0)
        self.check_params(state.params)
        extra = {}
        if rows_seen is not None:
            if not hasattr(self.noiser, "estimate_grads"):
                raise ValueError(f"rows_seen: the {self.noiser.__name__} noiser has no per-row estimate; "
                                 f"use EggRoll or OpenES, or pass rows_seen=None")
            extra["rows_seen"] = rows_seen
        fit = self.fitness(state, raw)
        iterinfos = (np.full(self.pop_size, state.epoch), self.members)
        noiser_params, params = self.noiser.do_updates(self.frozen_noiser_params, state.noiser_params, state.params,
                                                       self.es_tree_key, fit, iterinfos, self.es_map, **extra)
        epoch = state.epoch + 1
        if self.sigma_schedule is not None:
            sigma = self.sigma_schedule(epoch)
            _check_sigma_value(sigma, epoch)
            sigma = float(sigma)
            noiser_params = {**noiser_params, "sigma": sigma}
        return replace(state, params=params, noiser_params=noiser_params, epoch=epoch)


def _check_arguments(pop_size, sigma, lr, seed, noiser_kwargs) -> None:
    """ValueError naming the first of ``ES.create``'s arguments that is of the wrong kind or range."""
    check_int("pop_size", pop_size, 1)
    check_int("seed", seed, 0, 2**32)
    for name, low in (("rank", 1), ("group_size", 0), ("noise_reuse", 0)):
        if name in noiser_kwargs:
            check_int(name, noiser_kwargs[name], low)
    for name, value, low in (("sigma", sigma, "> 0"), ("lr", lr, ">= 0")):
        if callable(value):
            continue
        if not (_number(value) and np.isfinite(value) and (value > 0 if low == "> 0" else value >= 0)):
            raise ValueError(f"{name} must be a finite number {low} or a schedule (a function of the "
                             f"{'epoch' if name == 'sigma' else 'step'}), got {value!r} ({type(value).__name__})")


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _check_sigma_value(sigma, epoch: int) -> None:
    """A sigma schedule's value: finite and >= 0 (a decay may end at exactly 0)."""
    if not (_number(sigma) and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma schedule returned {sigma} at epoch {epoch}; it must be a finite number >= 0")


def _check_lr_value(lr, step: int) -> None:
    if not (_number(lr) and np.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr schedule returned {lr} at step {step}; it must be a finite number >= 0")


def _from_recipe(recipe: dict) -> ES:
    r = dict(recipe)
    return ES.create(r.pop("model"), r.pop("model_kwargs"), **r)[0]
