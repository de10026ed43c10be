"""``--mode int``: the int8 EGG model trained by Q-EGGROLL, behind the ``Run`` interface.

One generation (``int_epoch``), as nano-egg's training loop runs it::

    raw_p   = Σₜ ll_p,t                  perturbed forward of member p over its T bytes (int32, 1/16 bit)
    f_i     = sign(raw_2i − raw_2i+1)    one int8 fitness per antithetic pair
    θ       ← θ ± 1 where significant    QEggRoll.do_updates (even members' noise)

Member states persist across generations (``IntRun`` passes them back in), and the reset on byte
0 happens inside the forward (``models.egg.generate``, the EGG sequence driver). ``--sigma-shift``
(perturbations shifted right by 4 + it) and ``--alpha`` (the significance schedule) replace
``--sigma`` / ``--lr`` / ``--optimizer``, which have no meaning for ±1 integer updates.

Log-likelihoods are exact integers in 1/16 bit; only the reported bpb is a float, and it is the
same definition as float mode's (``evaluate.lanes_bpb``, with the unit ln 2 / 16 nats).

Mirrors: nano-egg run.py run_evolution (the generate / convert_fitnesses / do_updates step and
the validation pass).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from ... import keys as K
from ...models.base_model import simple_es_tree_key
from ...models.egg import EGG, generate
from ...noiser.qeggroll import QEggRoll
from ..checkpoint import model_fingerprint
from ..data import Corpus
from ..evaluate import LN2, Lanes, lanes_bpb
from .base_run import Run

NATS_PER_UNIT = LN2 / 16          # one unit of the integer log-likelihood is 1/16 bit


class EpochOut(NamedTuple):
    """What ``int_epoch`` returns."""
    params: dict            # updated int8 params
    noiser_params: dict     # unchanged by QEggRoll, returned for the functional interface
    states: np.ndarray      # (P, L, H) int8, value × 127, the members' states after this generation
    raw_scores: np.ndarray  # (P,) int32, Σₜ ll per member (1/16 bit; higher is better)
    fitness: np.ndarray     # (P/2,) int8


def int_epoch(params, frozen_noiser_params, noiser_params, es_tree_key, es_map, tokens, states, epoch: int,
              members=None, noiser=QEggRoll) -> EpochOut:
    """One int-mode generation: raw_p = Σₜ ll_p,t (int32, 1/16 bit), fᵢ = sign(raw₂ᵢ − raw₂ᵢ₊₁),
    θ ← θ ± 1 where the vote over the even members is significant (``QEggRoll.do_updates``).

    tokens: (P, T+1) uint8 windows (inputs ``[:, :-1]``, targets ``[:, 1:]``; antithetic
    partners 2i, 2i+1 should read the same bytes). states: (P, L, H) int8, value × 127.
    members: (P,) member ids, default 0..P−1 (P even).
    """
    tokens = np.asarray(tokens)
    p = tokens.shape[0]
    members = np.arange(p) if members is None else np.asarray(members)
    if p % 2 or members.shape != (p,):
        raise ValueError(f"need an even population with one member id per row; got {p} rows, members {members.shape}")
    out = generate(noiser, frozen_noiser_params, noiser_params, None, params, es_tree_key, (epoch, members),
                   tokens[:, :-1], tokens[:, 1:], states)
    fitness = noiser.convert_fitnesses(frozen_noiser_params, noiser_params, out.loss_sum)
    iterinfos = (np.full(p, epoch, np.int32), members)
    noiser_params, params = noiser.do_updates(frozen_noiser_params, noiser_params, params, es_tree_key,
                                              fitness, iterinfos, es_map)
    return EpochOut(params, noiser_params, out.final_state, out.loss_sum, fitness)


def int_step(params, frozen_noiser_params, noiser_params, es_tree_key, noiser=QEggRoll) -> Callable:
    """The plain int8 model as an ``evaluate.lanes_log_likelihood`` step:
    step(inputs (B, t) uint8, state (B, L, H) int8, reset (B, t) bool, targets (B, t) uint8)
    → (ll (B, t) int32 in 1/16 bit, state)."""
    def step(tokens, state, reset, targets):
        out = generate(noiser, frozen_noiser_params, noiser_params, None, params, es_tree_key, None,
                       tokens, targets, state, reset=reset)
        return out.ll, out.final_state
    return step


def int_bpb(params, frozen_noiser_params, noiser_params, es_tree_key, lanes: Lanes, noiser=QEggRoll) -> float:
    """bpb = −Σ ll / (16 N) of the plain int8 model over the N scored bytes of ``lanes``
    (``evaluate.lanes_bpb`` of ``int_step``; the sum is exact, lanes start from a zero state)."""
    zero = EGG.init_state(params, lanes.inputs.shape[0])                       # (K, L, H) int8
    step = int_step(params, frozen_noiser_params, noiser_params, es_tree_key, noiser)
    return lanes_bpb(step, lanes, zero, nats_per_unit=NATS_PER_UNIT)


class IntRun(Run):
    """Q-EGGROLL on the int8 EGG model (the generation is ``int_epoch``; interface: ``Run``)."""

    def __init__(self, cfg, corpus: Optional[Corpus] = None):
        super().__init__(cfg, corpus)
        root = K.key(cfg.seed)
        init = EGG.rand_init(K.fold_in(root, 0), cfg.hidden_dim, cfg.n_layers, 256)
        self.params, self.es_map = init.params, init.es_map
        self.es_tree_key = simple_es_tree_key(init.params, K.fold_in(root, 1), init.scan_map)
        self.frozen_noiser, self.noiser_params = QEggRoll.init_noiser(
            init.params, sigma_shift=cfg.sigma_shift, rank=cfg.rank, alpha=cfg.alpha, noise_reuse=cfg.noise_reuse)
        self.hidden = EGG.init_state(init.params, cfg.pop_size)                 # (P, L, H) int8, value × 127
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

    def bpb(self, lanes: Lanes) -> float:
        return int_bpb(self.params, self.frozen_noiser, self.noiser_params, self.es_tree_key, lanes)

    def logits_fn(self, tokens, state):
        """Logits in nats for sampling, ((B, 1, V), state): the int8 logit l means p ∝ 2^(l/16)."""
        if state is None:
            state = EGG.init_state(self.params, tokens.shape[0])                  # (B, L, H) int8
        out = generate(QEggRoll, self.frozen_noiser, self.noiser_params, None, self.params, self.es_tree_key, None,
                       tokens, None, state)
        return (out.last_logits.astype(np.float64) * NATS_PER_UNIT)[:, None], out.final_state

    def checkpoint_trees(self):
        return ({"params": self.params, "data": self.data_state, "hidden": self.hidden},
                {"epoch": self.epoch, "sigma_shift": int(self.noiser_params["sigma_shift"])})

    def _restore(self, trees: dict, scalars: dict) -> None:
        self.params = trees["params"]
        self.epoch = int(scalars["epoch"])
