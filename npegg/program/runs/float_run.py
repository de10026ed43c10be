"""``--mode float``: a byte-level ByteLM trained by EggRoll, as nano-egg trains its model.

One epoch (``FloatRun.epoch_step``)::

    windows  = reader.next(pos)                       (P, T+1) bytes; a group of g members shares them
    log p    = ByteLM, perturbed population            member p reads its own window, from its own
                                                      hidden state carried over from the last epoch
                                                      (reset before every byte 0)
    R_p      = Σₜ log p(x_{t+1} | x_{≤t})              fitness: the log-likelihood of the bytes
    θ        ← EggRoll update with SGD / Adam / AdamW  z-scores within each group of g members; the
                                                      embedding rows a member never read left out
                                                      of its term (``--embedding-update seen``)
    train bpb = −mean_p R_p / (T ln 2)                 of the perturbed population, as nano-egg logs

Antithetic partners 2k, 2k+1 are in the same group (g even), so the group mean removes how hard
the group's bytes are and leaves the effect of the noise. Validation (``valid_bpb``) scores the
whole validation split under the plain model (``npegg.program.evaluate``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...es import ES, ESState
from ...models.lm import ByteLM
from ...noise import NoiseTable
from ...noiser import EggRoll
from ..checkpoint import model_fingerprint
from ..config import schedule
from ..data import Corpus
from ..evaluate import LN2, Lanes, lanes_bpb
from .base_run import Diverged, Run

_NOISE_TABLES: dict = {}


def shared_noise_table(seed: int = 0) -> NoiseTable:
    """One float noise table per seed for the whole process: what it holds (the table and cached
    slices) is a pure function of the seed, so runs can share it instead of rebuilding it.

    Its slice cache is capped at 64 MiB: the default 256 MiB would fill with past epochs' noise,
    which training never reads again.
    """
    if seed not in _NOISE_TABLES:
        _NOISE_TABLES[seed] = NoiseTable(seed=seed, cache_bytes=64 << 20)
    return _NOISE_TABLES[seed]


class FloatRun(Run):
    """A float ByteLM trained by EggRoll: each epoch R_p = Σₜ log p(x_{t+1} | x_{≤t}) for the P
    perturbed members, z-scored within groups, then an EggRoll step with SGD / Adam / AdamW
    (interface: ``Run``)."""

    def __init__(self, cfg, corpus: Optional[Corpus] = None):
        """Build the model, noiser and optimizer; with a corpus also the reader and validation lanes."""
        super().__init__(cfg, corpus)
        self.es, self.state = ES.create(
            ByteLM, dict(hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers, cell=cfg.cell, head_scale=cfg.head_scale,
                        mlp_ratio=cfg.mlp_ratio, direct_path=cfg.direct_path),
            pop_size=cfg.pop_size, seed=cfg.seed, noiser=EggRoll,
            sigma=schedule(cfg.sigma_schedule, cfg.sigma, cfg.epochs),
            lr=schedule(cfg.lr_schedule, cfg.lr, cfg.epochs),
            solver=cfg.optimizer, group_size=cfg.group_size, rank=cfg.rank, noise_reuse=cfg.noise_reuse,
            fitness=cfg.fitness, noise=shared_noise_table(0))
        self.hidden = ByteLM.init_state(self.es.frozen_params, cfg.pop_size)          # (P, L, D) float32

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def params(self) -> dict:
        return self.state.params

    def fingerprint(self) -> dict:
        c = self.cfg
        return model_fingerprint(f"float-lm/{c.cell}", self.state.params, cell=c.cell, hidden_dim=c.hidden_dim,
                                 n_layers=c.n_layers, vocab=256, mode="float")

    def epoch_step(self) -> float:
        """One generation on the next (P, T+1) windows; returns train bpb = −mean_p R_p / (T ln 2)."""
        windows, data_state = self.reader.next(self.data_state)                     # (P, T+1) uint8
        ll, hidden = self.es.forward(self.state, windows[:, :-1], self.hidden, targets=windows[:, 1:])
        raw = ll.sum(axis=1, dtype=np.float64)                                      # (P,) nats
        bad = int((~np.isfinite(raw)).sum())
        if bad:
            raise Diverged(f"epoch {self.epoch + 1}: {bad} of {raw.size} members' log-likelihoods are not finite")
        state = self.es.step(self.state, raw, self.rows_seen(windows))
        self.state, self.hidden, self.data_state = state, hidden, data_state        # commit together
        return float(-raw.mean() / (self.cfg.tokens_per_update * LN2))

    def rows_seen(self, windows):
        """``ES.step``'s rows_seen for this epoch's windows (P, T+1): the embedding rows each member's
        input bytes read (``--embedding-update seen``), or None (``all``: the reference's update)."""
        if self.cfg.embedding_update == "all":
            return None
        return ByteLM.rows_seen(self.state.params, windows[:, :-1])

    def _plain(self, tokens, state, reset=None, targets=None):
        return self.es.evaluate(self.state, tokens, state, reset, targets)

    def bpb(self, lanes: Lanes) -> float:
        return lanes_bpb(self._plain, lanes, ByteLM.init_state(self.es.frozen_params, lanes.inputs.shape[0]))

    def logits_fn(self, tokens, state):
        """Plain logits for sampling: tokens (B, t), state (B, L, D) or None → ((B, t, V), state)."""
        if state is None:
            state = ByteLM.init_state(self.es.frozen_params, tokens.shape[0])
        return self._plain(tokens, state)

    def checkpoint_trees(self) -> tuple[dict, dict]:
        np_ = self.state.noiser_params
        trees = {"params": self.state.params, "opt_state": np_["opt_state"], "data": self.data_state,
                 "hidden": self.hidden}
        return trees, {"epoch": self.state.epoch, "sigma": float(np_["sigma"])}

    def _restore(self, trees: dict, scalars: dict) -> None:
        noiser_params = {**self.state.noiser_params, "sigma": float(scalars["sigma"]), "opt_state": trees["opt_state"]}
        self.state = ESState(trees["params"], noiser_params, int(scalars["epoch"]))
