"""``Run``: the one interface of a training run, float or int.

A run owns everything that changes during training (parameters, optimizer or noiser state,
epoch, the members' recurrent states, the reader's position) and nothing else. The loop
(``npegg.program.loop.train``), the checkpoints and the CLI use only these members:

    cfg                     the run's ``TrainConfig`` (validated)
    epoch                   generations done so far (int)
    lanes                   the validation split laid out for scoring (with a corpus)
    epoch_step() → float    one generation on the next windows; returns the population's train bpb
    bpb(lanes) → float      bits per byte of the plain model (``evaluate.lanes_bpb``)
    valid_bpb() → float     ``bpb(lanes)``
    logits_fn(tokens, state) → (logits (B, t, V) in nats, state)    the plain model, for sampling
    fingerprint() → dict    what a checkpoint must match to be resumed by this run
    finite() → bool         every float it carries is finite (the loop stops with ``Diverged`` if not)
    checkpoint_trees() → (trees, scalars)   and  restore(trees, scalars): the exact run, and back

``restore(checkpoint_trees())`` gives back a run that continues bit for bit. Members read
windows of ``cfg.tokens_per_update + 1`` bytes from ``data.BatchReader``; a group of
``cfg.group_size`` members shares one window.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...tree import flatten
from ..data import BatchReader, Corpus
from ..evaluate import Lanes, plan_lanes


class Diverged(ArithmeticError):
    """The run's numbers stopped being finite (NaN or ±inf); the message says where."""


class Run:
    """Base of ``FloatRun`` and ``IntRun``: the reader, the validation lanes and the shared state."""

    hidden: np.ndarray          # (P, L, D) the members' recurrent states, carried from epoch to epoch

    def __init__(self, cfg, corpus: Optional[Corpus] = None):
        """cfg: a validated ``TrainConfig``; corpus: None builds a run for sampling / evaluation only."""
        self.cfg, self.corpus = cfg, corpus
        self.data_state = {"pos": np.zeros(cfg.pop_size // cfg.group_size, np.int64)}   # (P/g,) reader offsets
        if corpus is not None:
            self.reader = BatchReader(corpus.train, cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
            self.lanes = plan_lanes(corpus.valid, cfg.eval_lanes, cfg.eval_warmup, context=int(corpus.train[-1]))

    def epoch_step(self) -> float:
        """One generation; returns the perturbed population's train bpb = −mean_p R_p / (T ln 2)."""
        raise NotImplementedError

    def bpb(self, lanes: Lanes) -> float:
        """Bits per byte of the plain model on ``lanes`` (``npegg.program.evaluate.lanes_bpb``)."""
        raise NotImplementedError

    def valid_bpb(self) -> float:
        """Bits per byte of the plain model on the whole validation split."""
        return self.bpb(self.lanes)

    def logits_fn(self, tokens: np.ndarray, state):
        """Plain-model logits in nats for sampling: tokens (B, t) uint8, state or None (zero) →
        (logits (B, t', V) float, t' ≥ 1 with the last step last, new state)."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """``checkpoint.model_fingerprint`` of this run's model; a checkpoint must match it to resume."""
        raise NotImplementedError

    def checkpoint_trees(self) -> tuple[dict, dict]:
        """(trees, scalars) that ``restore`` turns back into this exact run."""
        raise NotImplementedError

    def finite(self) -> bool:
        """Whether every float the run carries (parameters, optimizer state, hidden states) is finite."""
        trees, _ = self.checkpoint_trees()
        return all(np.isfinite(v).all() for v in flatten(trees).values()
                   if np.asarray(v).dtype.kind in "fc")

    def restore(self, trees: dict, scalars: dict) -> None:
        """Continue from ``checkpoint_trees()`` output: the shared parts here, the model in ``_restore``."""
        hidden = np.asarray(trees["hidden"])
        if hidden.shape != self.hidden.shape:
            raise ValueError(f"checkpoint hidden states {hidden.shape} do not fit this run {self.hidden.shape}")
        self._restore(trees, scalars)
        self.hidden = hidden.astype(self.hidden.dtype)
        self.data_state = {"pos": np.asarray(trees["data"]["pos"], dtype=np.int64)}

    def _restore(self, trees: dict, scalars: dict) -> None:
        raise NotImplementedError
