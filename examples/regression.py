"""The seed notebook's toy regression, with npegg: fit y = x² + x + 1 on [−10, 10].

MLP 1 → 64 → 64 → 64 → 1 with the notebook's ``pqn`` activation (relu of a layer norm), EggRoll
rank 1, 4096 members in groups of 128 (each group sees one training point), σ = 1 and SGD with
learning rate 1, both decayed linearly to 0 over 1000 epochs. Run ``python examples/regression.py``;
``--epochs`` / ``--pop-size`` give a small setting, ``--workers N`` spreads the population over N
processes (the same numbers, bit for bit, for any N). It runs under npegg's BLAS policy
(``npegg.blas``): one BLAS thread in this process, as in every worker.
"""
import argparse
import time

import numpy as np

from npegg.blas import blas_threads
from npegg.es import ES
from npegg.models import MLP
from npegg.optim import linear_schedule


class SquaredError:
    """Fitness −(f(x) − y)² of each member on its group's training point. A module-level class, so
    it pickles and can be sent to worker processes."""

    def __init__(self, x, y, group_size):
        self.x, self.y, self.group_size = x, y, group_size

    def __call__(self, es, state, members):
        groups = es.pop_size // self.group_size
        idx = ((members // self.group_size) + state.epoch * groups) % self.x.size      # (n,) training point
        out = es.forward_members(state, members, self.x[idx, None])[:, 0]             # (n,)
        return -(out - self.y[idx]) ** 2


def run(epochs=1000, pop_size=4096, group_size=128, seed=1, log_every=100, verbose=True, workers=1, engine="local"):
    """Train and return (validation MSE per epoch, seconds per epoch, final predictions, test x)."""
    data = np.random.default_rng(0)
    train_x = data.uniform(-10, 10, 1024).astype(np.float32)
    test_x = data.uniform(-10, 10, 1024).astype(np.float32)
    f = lambda x: x ** 2 + x + 1
    train_y, test_y = f(train_x), f(test_x)

    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[64] * 3, activation="pqn"),
                          pop_size=pop_size, group_size=group_size, rank=1, seed=seed,
                          sigma=linear_schedule(1.0, 0.0, epochs), lr=linear_schedule(1.0, 0.0, epochs))
    losses, preds, t0 = [], [], time.perf_counter()

    def validate(state, raw):
        preds[:] = [es.evaluate(state, test_x[:, None])[:, 0]]
        losses.append(float(np.mean((preds[0] - test_y) ** 2)))
        epoch = state.epoch - 1
        if verbose and (epoch % log_every == 0 or epoch == epochs - 1):
            print(f"epoch {epoch:4d}  validation MSE {losses[-1]:10.3f}")

    es.train(state, SquaredError(train_x, train_y, group_size), epochs, on_epoch=validate,
             workers=workers, engine=engine)
    per_epoch = (time.perf_counter() - t0) / max(epochs, 1)
    return np.array(losses), per_epoch, preds[0] if preds else None, test_x


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--pop-size", type=int, default=4096)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="worker processes (or Ray actors with --engine ray)")
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    a = ap.parse_args()
    if a.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {a.epochs}")
    if a.group_size < 1:        # the library's 0 (one group) has no meaning here: each group shares one point
        ap.error(f"--group-size must be >= 1 (each group of members is scored on one training point), got {a.group_size}")
    t = time.perf_counter()
    try:        # the library checks its arguments before any work; show its message as a usage error
        with blas_threads(1):
            losses, per_epoch, _, _ = run(a.epochs, a.pop_size, a.group_size, a.seed, workers=a.workers,
                                          engine=a.engine)
    except ValueError as e:
        ap.error(str(e))
    print(f"final validation MSE {losses[-1]:.3f}; {1000 * per_epoch:.1f} ms per epoch; "
          f"wall {time.perf_counter() - t:.1f} s")
