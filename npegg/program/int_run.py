"""``--mode int``: the int8 EGG model trained by Q-EGGROLL, behind the same interface as ``FloatRun``.

The generation itself is ``npegg.program.int_epoch.int_epoch`` (population forward, pair-sign fitness,
thresholded ±1 update); this module only feeds it nano-egg's batches, carries the members' int8
states from epoch to epoch, scores the validation split and checkpoints. ``--sigma-shift``
(perturbations shifted right by 4 + it) and ``--alpha`` (the significance schedule) replace
``--sigma`` / ``--lr`` / ``--optimizer``, which have no meaning for ±1 integer updates.

Log-likelihoods are exact integers in 1/16 bit; only the reported bpb is a float.
"""
from __future__ import annotations

import numpy as np

from .. import keys as K
from .checkpoint import model_fingerprint
from .data import BatchReader, Corpus
from .evaluate import LN2, Lanes, lanes_bpb, plan_lanes
from ..int8.loglik import int_ll
from .int_epoch import int_epoch
from ..models.common import simple_es_tree_key
from ..models.egg import EGG
from ..noiser.qeggroll import QEggRoll

_NATS_PER_UNIT = LN2 / 16          # one unit of the integer log-likelihood is 1/16 bit


class IntRun:
    """Q-EGGROLL on the int8 EGG model; see ``npegg.program.train.FloatRun`` for the interface."""

    def __init__(self, cfg, corpus: Corpus | None = None):
        self.cfg, self.corpus = cfg, corpus
        root = K.key(cfg.seed)
        init = EGG.rand_init(K.fold_in(root, 0), 256, cfg.n_layers, cfg.hidden_dim)
        self.params, self.es_map = init.params, init.es_map
        self.es_tree_key = simple_es_tree_key(init.params, K.fold_in(root, 1), init.scan_map)
        self.frozen_noiser, self.noiser_params = QEggRoll.init_noiser(
            init.params, sigma_shift=cfg.sigma_shift, rank=cfg.rank, alpha=cfg.alpha, noise_reuse=cfg.noise_reuse)
        self.hidden = np.zeros((cfg.pop_size, cfg.n_layers, cfg.hidden_dim), np.int8)     # (P, L, H) int8, × 127
        self.data_state = {"pos": np.zeros(cfg.pop_size // cfg.group_size, np.int64)}
        if corpus is not None:
            self.reader = BatchReader(corpus.train, cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
            self.lanes = plan_lanes(corpus.valid, cfg.eval_lanes, cfg.eval_warmup, context=int(corpus.train[-1]))
        self.epoch = 0

    def fingerprint(self) -> dict:
        c = self.cfg
        return model_fingerprint("int8-egg", self.params, cell="egg", hidden_dim=c.hidden_dim,
                                 n_layers=c.n_layers, vocab=256, mode="int")

    def epoch_step(self) -> float:
        windows, data_state = self.reader.next(self.data_state)                      # (P, T+1) uint8
        out = int_epoch(self.params, self.frozen_noiser, self.noiser_params, self.es_tree_key, self.es_map,
                        windows, self.hidden, self.epoch)
        self.params, self.noiser_params, self.hidden = out.params, out.noiser_params, out.states
        self.data_state, self.epoch = data_state, self.epoch + 1
        return float(-out.raw_scores.astype(np.float64).mean() / 16 / self.cfg.tokens_per_update)

    def _steps(self, tokens, state, reset, targets, iterinfo=None):
        """Integer forward over (B, t) with an explicit reset mask → (log p in nats (B, t), state)."""
        state = np.array(state, dtype=np.int8, copy=True)                              # (B, L, H)
        ll = np.empty(tokens.shape, np.int32)
        for t in range(tokens.shape[1]):
            state[reset[:, t]] = 0
            logits, state = EGG.forward(QEggRoll, self.frozen_noiser, self.noiser_params, None, self.params,
                                        self.es_tree_key, iterinfo, tokens[:, t], state)
            ll[:, t] = int_ll(logits, targets[:, t])                                   # 1/16 bit
        return ll * _NATS_PER_UNIT, state

    def bpb(self, lanes: Lanes) -> float:
        zero = np.zeros((lanes.inputs.shape[0], self.cfg.n_layers, self.cfg.hidden_dim), np.int8)
        return lanes_bpb(self._steps, lanes, zero)

    def valid_bpb(self) -> float:
        return self.bpb(self.lanes)

    def logits_fn(self, tokens, state):
        """Logits in nats for sampling: the int8 logit l means p ∝ 2^(l/16)."""
        if state is None:
            state = np.zeros((tokens.shape[0], self.cfg.n_layers, self.cfg.hidden_dim), np.int8)
        state = np.array(state, dtype=np.int8, copy=True)
        for t in range(tokens.shape[1]):
            state[tokens[:, t] == 0] = 0
            logits, state = EGG.forward(QEggRoll, self.frozen_noiser, self.noiser_params, None, self.params,
                                        self.es_tree_key, None, tokens[:, t], state)
        return (logits.astype(np.float64) * _NATS_PER_UNIT)[:, None], state

    def checkpoint_trees(self):
        return ({"params": self.params, "data": self.data_state, "hidden": self.hidden},
                {"epoch": self.epoch, "sigma_shift": int(self.noiser_params["sigma_shift"])})

    def restore(self, trees: dict, scalars: dict) -> None:
        hidden = np.asarray(trees["hidden"])
        if hidden.shape != self.hidden.shape:
            raise ValueError(f"checkpoint hidden states {hidden.shape} do not fit this run {self.hidden.shape}")
        self.params = trees["params"]
        self.hidden = hidden.astype(np.int8)
        self.data_state = {"pos": np.asarray(trees["data"]["pos"], dtype=np.int64)}
        self.epoch = int(scalars["epoch"])
