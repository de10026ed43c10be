"""The training loop of ``npegg train``: ``train`` a run to its last epoch, recording a ``History``.

    epoch 0                valid bpb of the initial model (a fresh run only)
    epoch e = 1 … E        train bpb = run.epoch_step(); valid bpb every ``eval_every`` epochs
                           and after the last; save() every ``save_every`` epochs and after the last

The loop knows only the ``runs.Run`` interface, so float and int runs train the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class History:
    """Per-epoch metrics; ``valid`` is NaN where no validation ran. Epoch 0 is before training."""
    epoch: list
    train_bpb: list
    valid_bpb: list
    seconds: list

    @classmethod
    def empty(cls) -> "History":
        """No epochs yet."""
        return cls([], [], [], [])

    def add(self, epoch, train, valid, seconds):
        """Append one epoch: train and valid bpb (valid None → NaN), seconds since the run began."""
        self.epoch.append(int(epoch))
        self.train_bpb.append(float(train))
        self.valid_bpb.append(float("nan") if valid is None else float(valid))
        self.seconds.append(float(seconds))

    def tree(self) -> dict:
        """The checkpoint tree: {name: (E,) int64 epochs or float64 values}."""
        return {"epoch": np.asarray(self.epoch, np.int64), "train_bpb": np.asarray(self.train_bpb, np.float64),
                "valid_bpb": np.asarray(self.valid_bpb, np.float64), "seconds": np.asarray(self.seconds, np.float64)}

    @classmethod
    def from_tree(cls, t: dict) -> "History":
        """Inverse of ``tree``."""
        return cls(*(np.asarray(t[k]).tolist() for k in ("epoch", "train_bpb", "valid_bpb", "seconds")))


def train(run, history: History, on_epoch: Callable = lambda e, t, v: None,
          save: Callable = lambda: None, clock: Callable[[], float] = time.perf_counter,
          on_start: Callable = lambda: None) -> History:
    """Train ``run`` from its current epoch to ``run.cfg.epochs``, validating and saving on schedule.

    Validation runs before the first epoch of a fresh run (epoch 0), every ``eval_every`` epochs
    and after the last; ``save()`` after every ``save_every`` epochs and after the last.
    ``on_start()`` runs before the first epoch, ``on_epoch(epoch, train_bpb, valid_bpb or None)``
    after each. A KeyboardInterrupt between epochs leaves ``run`` at the last finished epoch (the caller saves it).
    """
    cfg = run.cfg
    t0 = clock() - (history.seconds[-1] if history.seconds else 0.0)
    if not history.epoch:
        history.add(0, float("nan"), run.valid_bpb(), clock() - t0)
    on_start()
    while run.epoch < cfg.epochs:
        train_bpb = run.epoch_step()
        e = run.epoch
        valid = run.valid_bpb() if (e % cfg.eval_every == 0 or e == cfg.epochs) else None
        history.add(e, train_bpb, valid, clock() - t0)
        on_epoch(e, train_bpb, valid)
        if e % cfg.save_every == 0 or e == cfg.epochs:
            save()
    return history
