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

from .runs.base_run import Diverged

__all__ = ["Diverged", "History", "train"]


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

    def upto(self, epoch: int) -> "History":
        """The rows of epochs ``<= epoch`` (a history a step ahead of its run, cut back to it)."""
        n = sum(1 for e in self.epoch if e <= epoch)
        return History(self.epoch[:n], self.train_bpb[:n], self.valid_bpb[:n], self.seconds[:n])

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
    after each.

    Consistency under interrupts: an epoch's history row is added as soon as the run has taken
    the step, before its validation, so at every moment the history ends at ``run.epoch`` (a
    KeyboardInterrupt anywhere leaves a run and history the caller can save together). A
    validation that was due but interrupted (NaN in the last row) is run first on resume.

    Divergence: when the population's scores, the run's parameters or a validation stop being
    finite, ``Diverged`` is raised before anything is saved, so the last checkpoint stays the last
    good one.
    """
    cfg = run.cfg
    due = lambda e: e == 0 or e % cfg.eval_every == 0 or e == cfg.epochs    # noqa: E731
    t0 = clock() - (history.seconds[-1] if history.seconds else 0.0)
    if not history.epoch or history.epoch[-1] < run.epoch:
        history.add(run.epoch, float("nan"), None, clock() - t0)
    if due(run.epoch) and not np.isfinite(history.valid_bpb[-1]):
        history.valid_bpb[-1] = float(run.valid_bpb())                # epoch 0, or a validation cut short
        if run.epoch:
            save()
    on_start()
    while run.epoch < cfg.epochs:
        train_bpb = run.epoch_step()
        e = run.epoch
        history.add(e, train_bpb, None, clock() - t0)
        if not (np.isfinite(train_bpb) and run.finite()):
            raise Diverged(f"epoch {e}: the parameters became non-finite (NaN or inf)")
        valid = None
        if due(e):
            valid = history.valid_bpb[-1] = float(run.valid_bpb())
            if not np.isfinite(valid):
                raise Diverged(f"epoch {e}: the validation bpb is not finite")
        on_epoch(e, train_bpb, valid)
        if e % cfg.save_every == 0 or e == cfg.epochs:
            save()
    return history
