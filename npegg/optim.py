"""Optimizers shaped like optax, and schedules for learning rate and sigma.

An optimizer is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)          # p + u, cast to p's dtype

Trees are nested dicts of arrays; optimizer state is a plain dict of arrays and trees (so a
checkpoint can store it without pickle). Defaults and formulas are optax's, so a backend can swap
optax in and match:

- ``sgd(lr, momentum=None, nesterov=False)``: t ← g + μ t;  u = −lr · (g + μ t if nesterov else t)
  (u = −lr · g without momentum).
- ``adam(lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0)``: with k = number of updates so far + 1,
  m ← b1 m + (1 − b1) g;  v ← b2 v + (1 − b2) g²;  m̂ = m / (1 − b1ᵏ);  v̂ = v / (1 − b2ᵏ);
  u = −lr · m̂ / (√(v̂ + eps_root) + eps), with 1 − βᵏ formed as optax forms it, in float32 from
  float32(β) (``_bias_correction``): the same bits as optax run op by op.
- ``adamw(lr, b1, b2, eps, eps_root, weight_decay=1e-4)``: u = −lr · (m̂ / (√(v̂ + eps_root) + eps) + wd · p).

``lr`` may be a float or a schedule (a function of the step count k − 1 = 0, 1, …).

ES sign convention: npegg maximises fitness. The noiser hands the optimizer ``G`` = minus the
fitness-ascent direction (see ``npegg.noiser.eggroll``), so ``sgd`` moves params by −lr·G, up the
fitness. That is why the same optimizers that minimise a loss maximise a fitness here.

Mirrors: optax.sgd, optax.adam, optax.adamw, optax.clip_by_global_norm, optax.chain,
optax.apply_updates, optax.schedules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Union

import numpy as np

from .tree import tree_items, tree_map

Schedule = Callable[[int], float]
ScalarOrSchedule = Union[float, Schedule]


class GradientTransformation(NamedTuple):
    init: Callable
    update: Callable


def _lr_at(lr: ScalarOrSchedule, count: int) -> float:
    """The rate at step ``count``; a schedule's value must be a finite number >= 0."""
    if not callable(lr):
        return float(lr)
    value = float(lr(count))
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"learning_rate schedule returned {value} at step {count}; it must be a finite number >= 0")
    return value


def _check_lr(lr):
    if not callable(lr) and not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0 or a schedule, got {lr}")


def _bias_correction(decay: float, k: int) -> np.float32:
    """Adam's 1 − βᵏ as optax forms it: 1 − float32(β) ** float32(k), every operation in float32.

    optax writes ``1 - decay ** count`` with a Python-float β and an int32 count; JAX lowers it to
    a float32 ``pow`` of float32(β), and XLA's CPU backend evaluates that with the C library's
    ``powf``. NumPy's float32 *scalar* power calls the same ``powf`` (its array ``np.power`` may
    use a SIMD routine with other last bits, so it is not used here). The base is rounded to float32
    before the power: float32(0.999)ᵏ differs from 0.999ᵏ by about k · 1.3e-8 relative, hundreds
    of float32 ulps of the correction after a few thousand steps, so the exact value is *not*
    what the reference computes. (XLA flushes a subnormal power to zero; 1 − subnormal is 1 in
    float32 anyway, so that changes no correction.)

    Mirrors: optax.tree.bias_correction (the ``1 - decay**count`` in float32).
    """
    power = np.float32(decay) ** np.float32(k)    # scalar float32 ** float32: the C library's powf
    return np.float32(1) - np.float32(power)


def apply_updates(params, updates):
    """p + u per leaf, keeping each parameter's dtype (optax.apply_updates)."""
    return tree_map(lambda p, u: (np.asarray(p) + u).astype(np.asarray(p).dtype), params, updates)


def sgd(learning_rate: ScalarOrSchedule, momentum: float | None = None, nesterov: bool = False):
    """Stochastic gradient descent with optional (Nesterov) momentum, as optax.sgd.

    Per leaf, with g the gradient and t the momentum trace (0 at init)::

        t ← g + μ t;   u = −lr · (g + μ t if nesterov else t)        (momentum μ)
        u = −lr · g                                                   (momentum None)

    Returns ``GradientTransformation(init, update)``: ``init(params)`` → state {count () int32,
    trace (tree like params)}; ``update(grads, state, params=None)`` → (updates like grads, state).
    ``learning_rate``: a float ≥ 0 or a schedule of the step count 0, 1, ….

    >>> opt = sgd(0.1); s = opt.init({"w": np.zeros(2)})
    >>> opt.update({"w": np.ones(2)}, s)[0]["w"]
    array([-0.1, -0.1])
    """
    _check_lr(learning_rate)
    if momentum is not None and not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")

    def init(params):
        state = {"count": np.zeros((), np.int32)}
        if momentum is not None:
            state["trace"] = tree_map(np.zeros_like, params)
        return state

    def update(grads, state, params=None):
        lr = _lr_at(learning_rate, int(state["count"]))
        new = {"count": state["count"] + np.int32(1)}
        if momentum is not None:
            trace = tree_map(lambda g, t: g + momentum * t, grads, state["trace"])
            new["trace"] = trace
            direction = tree_map(lambda g, t: g + momentum * t, grads, trace) if nesterov else trace
        else:
            direction = grads
        return tree_map(lambda d: -lr * d, direction), new

    return GradientTransformation(init, update)


def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, weight_decay: float = 0.0):
    """Adam with bias correction (optax defaults); ``weight_decay`` > 0 gives AdamW.

    Per leaf, with k = updates so far + 1 and m, v zero at init::

        m ← b1 m + (1 − b1) g;   v ← b2 v + (1 − b2) g²
        m̂ = m / (1 − b1ᵏ);       v̂ = v / (1 − b2ᵏ)          (1 − βᵏ = 1 − powf(float32(β), k) in float32, as optax)
        u = −lr · (m̂ / (√(v̂ + eps_root) + eps) + wd · p)     (wd = ``weight_decay``; p the params)

    Returns ``GradientTransformation(init, update)``: state {count () int32, mu, nu (trees like
    params, their dtypes)}; ``update(grads, state, params)`` → (updates, state); params are
    needed only when wd > 0. Mirrors: optax.adam, optax.adamw.

    >>> opt = adam(0.1); s = opt.init({"w": np.zeros(1, np.float32)})
    >>> opt.update({"w": np.ones(1, np.float32)}, s)[0]["w"]      # first step: −lr · sign(g)
    array([-0.1], dtype=float32)
    """
    _check_lr(learning_rate)
    for name, b in (("b1", b1), ("b2", b2)):
        if not 0 <= b < 1:
            raise ValueError(f"{name} must be in [0, 1), got {b}")

    def init(params):
        return {"count": np.zeros((), np.int32), "mu": tree_map(np.zeros_like, params),
                "nu": tree_map(np.zeros_like, params)}

    def update(grads, state, params=None):
        k = int(state["count"]) + 1
        lr = _lr_at(learning_rate, k - 1)
        mu = tree_map(lambda g, m: (1 - b1) * g + b1 * m, grads, state["mu"])
        nu = tree_map(lambda g, v: (1 - b2) * (g * g) + b2 * v, grads, state["nu"])
        c1 = _bias_correction(b1, k)
        c2 = _bias_correction(b2, k)

        def step(m, v, p):
            m_hat = m / c1.astype(m.dtype)
            v_hat = v / c2.astype(v.dtype)
            u = m_hat / (np.sqrt(v_hat + eps_root) + eps)
            if weight_decay:
                u = u + weight_decay * p
            return (-lr * u).astype(m.dtype)
        if weight_decay and params is None:
            raise ValueError("adamw needs params in update(grads, state, params)")
        updates = tree_map(step, mu, nu, params if weight_decay else mu)
        return updates, {"count": np.asarray(k, np.int32), "mu": mu, "nu": nu}

    return GradientTransformation(init, update)


def adamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: float = 1e-4):
    """AdamW: Adam plus decoupled weight decay (optax.adamw defaults)."""
    return adam(learning_rate, b1, b2, eps, eps_root, weight_decay)


def clip_by_global_norm(max_norm: float):
    """Scale the whole tree down so its global norm is at most ``max_norm`` (optax.clip_by_global_norm).

    ‖g‖ = √(Σ_leaves Σ g²);  u = g if ‖g‖ < max_norm, else (g / ‖g‖) · max_norm.
    State: {} (none). Used by ``EggRollBS`` (its trust region, chained before the optimizer).
    Mirrors: optax.clip_by_global_norm.
    """
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm}")

    def init(params):
        return {}

    def update(grads, state, params=None):
        leaves = [np.asarray(g) for _, g in tree_items(grads)]
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in leaves))   # float64 (optax: float32)
        if norm < max_norm:
            return grads, state
        return tree_map(lambda g: ((g / np.asarray(norm, g.dtype)) * max_norm).astype(g.dtype), grads), state

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation):
    """Apply transformations in order, each to the previous one's updates (optax.chain).

    State: {"0": state of the first, "1": …} (plain dicts, as every optimizer state here).
    Mirrors: optax.chain.
    """
    def init(params):
        return {str(i): t.init(params) for i, t in enumerate(transforms)}

    def update(grads, state, params=None):
        new = {}
        for i, t in enumerate(transforms):
            grads, new[str(i)] = t.update(grads, state[str(i)], params)
        return grads, new

    return GradientTransformation(init, update)


OPTIMIZERS = {"sgd": sgd, "adam": adam, "adamw": adamw}


# -- schedules ------------------------------------------------------------------------------------
# Schedules are small frozen dataclasses rather than closures so that they pickle: an ``ES`` that
# uses one can be sent to worker processes (``npegg.parallel``).
@dataclass(frozen=True)
class _Constant:
    value: float

    def __call__(self, count):
        return self.value


@dataclass(frozen=True)
class _Linear:
    init_value: float
    end_value: float
    transition_steps: int
    transition_begin: int

    def __call__(self, count):
        frac = np.clip((count - self.transition_begin) / self.transition_steps, 0.0, 1.0)
        return self.init_value + frac * (self.end_value - self.init_value)


@dataclass(frozen=True)
class _Exponential:
    init_value: float
    transition_steps: int
    decay_rate: float
    transition_begin: int
    staircase: bool
    end_value: float | None

    def __call__(self, count):
        p = max(count - self.transition_begin, 0) / self.transition_steps
        v = self.init_value * self.decay_rate ** (np.floor(p) if self.staircase else p)
        if self.end_value is not None:
            v = max(v, self.end_value) if self.decay_rate < 1 else min(v, self.end_value)
        return v


@dataclass(frozen=True)
class _Cosine:
    init_value: float
    decay_steps: int
    alpha: float
    exponent: float

    def __call__(self, count):
        c = 0.5 * (1 + np.cos(np.pi * min(count, self.decay_steps) / self.decay_steps))
        return self.init_value * ((1 - self.alpha) * c ** self.exponent + self.alpha)


def constant_schedule(value: float) -> Schedule:
    """v(k) = value for every step k."""
    return _Constant(value)


def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    """init → end linearly over ``transition_steps`` steps after ``transition_begin``, then end.

    v(k) = init + clip((k − begin)/steps, 0, 1) · (end − init). As optax: steps ≤ 0 holds
    ``init_value`` forever, and a negative begin counts as 0.
    """
    if transition_steps <= 0:
        return constant_schedule(init_value)
    return _Linear(init_value, end_value, transition_steps, max(transition_begin, 0))


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: float | None = None) -> Schedule:
    """init · rate^((count − begin)/steps) (floored exponent if staircase), bounded by end_value.

    As optax: steps ≤ 0 or rate = 0 hold ``init_value`` forever, a negative begin counts as 0,
    and end_value is a floor when rate < 1, a ceiling otherwise.
    """
    if transition_steps <= 0 or decay_rate == 0:
        return constant_schedule(init_value)
    return _Exponential(init_value, transition_steps, decay_rate, max(transition_begin, 0), staircase, end_value)


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0,
                          exponent: float = 1.0) -> Schedule:
    """init · ((1 − α) · (½(1 + cos(π · min(count, T)/T)))^exponent + α)."""
    if decay_steps <= 0:
        raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
    return _Cosine(init_value, decay_steps, alpha, exponent)
