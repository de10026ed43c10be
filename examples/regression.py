"""The seed notebook's toy regression, with npegg: fit y = x² + x + 1 on [−10, 10].

MLP 1 → 64 → 64 → 64 → 1 with the notebook's ``pqn`` activation (relu of a layer norm), EggRoll
rank 1, 4096 members in groups of 128 (each group sees one training point), σ = 1 and SGD with
learning rate 1, both decayed linearly to 0 over 1000 epochs. Run ``python examples/regression.py``;
``--epochs`` / ``--pop-size`` give a small setting.
"""
import argparse
import time

import numpy as np

from npegg.es import ES
from npegg.models import MLP
from npegg.optim import linear_schedule


def run(epochs=1000, pop_size=4096, group_size=128, seed=1, log_every=100, verbose=True):
    """Train and return (validation MSE per epoch, seconds per epoch, final predictions, test x)."""
    data = np.random.default_rng(0)
    train_x = data.uniform(-10, 10, 1024).astype(np.float32)
    test_x = data.uniform(-10, 10, 1024).astype(np.float32)
    f = lambda x: x ** 2 + x + 1
    train_y, test_y = f(train_x), f(test_x)

    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[64] * 3, activation="pqn"),
                          pop_size=pop_size, group_size=group_size, rank=1, seed=seed,
                          sigma=linear_schedule(1.0, 0.0, epochs), lr=linear_schedule(1.0, 0.0, epochs))
    groups = pop_size // group_size
    losses, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        idx = np.repeat((np.arange(groups) + epoch * groups) % train_x.size, group_size)  # (P,)
        out = es.forward(state, train_x[idx, None])[:, 0]                                # (P,)
        state = es.step(state, -(out - train_y[idx]) ** 2)
        pred = es.evaluate(state, test_x[:, None])[:, 0]
        losses.append(float(np.mean((pred - test_y) ** 2)))
        if verbose and (epoch % log_every == 0 or epoch == epochs - 1):
            print(f"epoch {epoch:4d}  validation MSE {losses[-1]:10.3f}")
    per_epoch = (time.perf_counter() - t0) / epochs
    return np.array(losses), per_epoch, pred, test_x


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--pop-size", type=int, default=4096)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t = time.perf_counter()
    losses, per_epoch, _, _ = run(a.epochs, a.pop_size, a.group_size, a.seed)
    print(f"final validation MSE {losses[-1]:.3f}; {1000 * per_epoch:.1f} ms per epoch; "
          f"wall {time.perf_counter() - t:.1f} s")
