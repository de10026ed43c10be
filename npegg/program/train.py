"""Training a byte-level language model by evolution strategies, as nano-egg does it.

One epoch (``FloatRun.epoch_step``)::

    windows  = reader.next(pos)                       (P, T+1) bytes; a group of g members shares them
    log p    = ByteLM, perturbed population            member p reads its own window, from its own
                                                      hidden state carried over from the last epoch
                                                      (reset before every byte 0)
    R_p      = Σₜ log p(x_{t+1} | x_{≤t})              fitness: the log-likelihood of the bytes
    θ        ← EggRoll update with SGD / Adam / AdamW  z-scores within each group of g members
    train bpb = −mean_p R_p / (T ln 2)                 of the perturbed population, as nano-egg logs

Antithetic partners 2k, 2k+1 are in the same group (g even), so the group mean removes how hard
the group's bytes are and leaves the effect of the noise. Validation (``valid_bpb``) scores the
whole validation split under the plain model (``npegg.program.evaluate``).

Everything that changes lives in the run (params, optimizer state, σ, epoch, reader position,
hidden states, metrics); ``checkpoint_trees`` / ``restore`` turn it into checkpoint trees and back,
so a resumed run continues bit for bit. ``--mode int`` (``IntRun``, ``npegg.program.int_run``) has the
same interface over the int8 EGG model and Q-EGGROLL.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional

import numpy as np

from .. import optim
from .checkpoint import model_fingerprint
from .data import BatchReader, Corpus
from ..es import ES, ESState
from .evaluate import LN2, Lanes, lanes_bpb, plan_lanes
from ..fitness import SHAPERS, check_population
from ..models.lm import CELLS, ByteLM
from ..noise import NoiseTable
from ..noiser import EggRoll

SCHEDULES = ("constant", "linear", "cosine")
METHODS = ("es", "backprop")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag and what is allowed."""


@dataclass
class TrainConfig:
    """Every setting of a run. Field names are the CLI flags with '-' for '_'.

    The defaults are tuned so that ``npegg train`` with no flags (the stdlib corpus, 2.6 MB train /
    382 kB valid) ends well below the unigram baseline in 4 to 5½ minutes on one core (this
    machine's speed drifts by ±30% from hour to hour), with a peak RSS of ~240 MB. 300 epochs
    gain 0.04 bpb for 25% more time; 240 keeps the 10-minute promise with room to spare.
    Measured here (valid bpb at the end; unigram 4.540, bigram 3.594), D=64, L=2, T=100, σ=0.03, Adam:

        P=512,  g=2, lr 0.02 constant, 200 epochs      egg 4.157 (187 CPU s), mingru 4.153 (184 s)
          same, lr 0.05 constant / 0.05 cosine / 0.03 cosine      4.387 / 4.192 / 4.164
          same, σ=0.1 / σ=0.01                                    4.375 / 4.176
          same, D=128 L=1 / L=3 / g=8                             4.478 / 4.169 / 4.137
        P=256, 400 epochs / T=50, 400 epochs (equal compute)     4.237 / 4.184
        P=1024, g=8, lr 0.02 constant, 200 epochs      egg 4.056 (235 s), mingru 4.065 (244 s)
        P=512,  g=8, lr 0.03 cosine, 400 epochs        3.989 (236 s); g=2: 3.986
        P=1024, g=8, lr 0.03 cosine, 300 epochs        egg 3.929 (337 s), mingru 3.916 (360-393 s)
        P=1024, g=8, lr 0.03 cosine, 240 epochs        mingru 3.960 (306 s)   <- the defaults

    Larger populations beat more epochs at equal compute, a cosine decay helps a long run, and
    the cell type does not matter for the bpb at this size; the minGRU is the default because an
    epoch is ~15% faster (no loop over time): 0.85 s against 1.0 s here. On a short run (50 epochs) a constant rate is
    better (5.43 against 5.69 with cosine on the seed's quick test); both are far below its 7.17.
    """
    mode: str = "float"
    method: str = "es"             # float mode: "es" (EggRoll) or "backprop" (npegg.program.backprop_run)
    cell: str = "mingru"           # int mode: always "egg" (nano-egg's int8 model)
    hidden_dim: int = 64
    n_layers: int = 2
    epochs: int = 240
    pop_size: int = 1024
    group_size: int = 8
    tokens_per_update: int = 100
    rank: int = 1
    sigma: float = 0.03
    lr: float = 0.03
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    sigma_schedule: str = "constant"
    seed: int = 0
    data: Optional[str] = None
    max_docs: Optional[int] = None
    valid_fraction: float = 0.1
    eval_every: int = 0            # 0: about five validations per run
    save_every: int = 0            # 0: with every validation
    sample_bytes: int = 400
    eval_lanes: int = 128
    eval_warmup: int = 256
    head_scale: float = 1.0
    noise_reuse: int = 1
    fitness: str = "zscore"        # float mode: fitness shaping, one of npegg.fitness.SHAPERS
    sigma_shift: int = 4           # int mode: perturbations are shifted right by 4 + sigma_shift
    alpha: float = 4.0             # int mode: Q-EGGROLL's significance schedule

    def resolved(self) -> "TrainConfig":
        """A copy with the automatic values filled in."""
        c = TrainConfig(**asdict(self))
        if c.eval_every <= 0:
            c.eval_every = max(1, round(c.epochs / 5))
        if c.save_every <= 0:
            c.save_every = c.eval_every
        return c

    def validate(self) -> None:
        """Raise ConfigError naming the first flag that cannot work."""
        def bad(flag, msg):
            raise ConfigError(f"--{flag}: {msg}")
        if self.mode not in ("float", "int"):
            bad("mode", f"must be one of float, int; got {self.mode!r}")
        if self.method not in METHODS:
            bad("method", f"must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.mode == "int" and self.method != "es":
            bad("method", "--mode int trains only by ES (Q-EGGROLL)")
        if self.fitness not in SHAPERS:
            bad("fitness", f"must be one of {', '.join(sorted(SHAPERS))}; got {self.fitness!r}")
        if self.cell not in CELLS:
            bad("cell", f"must be one of {', '.join(sorted(CELLS))}; got {self.cell!r}")
        if self.mode == "int" and self.cell != "egg":
            bad("cell", "--mode int has only the egg cell (nano-egg's int8 model)")
        for name in ("epochs", "hidden_dim", "n_layers", "pop_size", "tokens_per_update", "rank", "eval_lanes"):
            if int(getattr(self, name)) < 1:
                bad(name.replace("_", "-"), f"must be an integer >= 1; got {getattr(self, name)}")
        if self.pop_size % 2:
            bad("pop-size", f"must be even (antithetic pairs 2k, 2k+1); got {self.pop_size}")
        if self.group_size < 2 or self.group_size % 2 or self.pop_size % self.group_size:
            bad("group-size", f"must be an even number >= 2 that divides --pop-size {self.pop_size} "
                              f"(antithetic partners share a group); got {self.group_size}")
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            bad("sigma", f"must be a number > 0; got {self.sigma}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            bad("lr", f"must be a number > 0; got {self.lr}")
        if self.optimizer not in optim.OPTIMIZERS:
            bad("optimizer", f"must be one of {', '.join(sorted(optim.OPTIMIZERS))}; got {self.optimizer!r}")
        for name in ("lr_schedule", "sigma_schedule"):
            if getattr(self, name) not in SCHEDULES:
                bad(name.replace("_", "-"), f"must be one of {', '.join(SCHEDULES)}; got {getattr(self, name)!r}")
        if self.max_docs is not None and self.max_docs < 2:
            bad("max-docs", f"must be >= 2 (one for training, one for validation); got {self.max_docs}")
        if not 0 <= self.seed < 2**32:
            bad("seed", f"must be in [0, 2**32); got {self.seed}")
        for name in ("eval_every", "save_every", "sample_bytes", "eval_warmup", "noise_reuse", "sigma_shift"):
            if int(getattr(self, name)) < 0:
                bad(name.replace("_", "-"), f"must be >= 0; got {getattr(self, name)}")
        if not (np.isfinite(self.head_scale) and self.head_scale >= 0):
            bad("head-scale", f"must be a number >= 0; got {self.head_scale}")
        if not self.alpha > 0:
            bad("alpha", f"must be > 0; got {self.alpha}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def schedule(kind: str, value: float, epochs: int):
    """constant value; or linear / cosine decay from value to 0 over ``epochs`` steps."""
    if kind == "constant":
        return value
    if kind == "linear":
        return optim.linear_schedule(value, 0.0, epochs)
    return optim.cosine_decay_schedule(value, epochs)


_NOISE_TABLES: dict = {}


def shared_noise_table(seed: int = 0) -> NoiseTable:
    """One float noise table per seed for the whole process: building it takes ~1 s, and what it
    holds (the table and cached slices) is a pure function of the seed, so runs can share it.

    Its slice cache is capped at 64 MiB (the default 256 MiB would fill with past epochs' noise,
    which training never reads again): one epoch of a 256-wide, 2-layer model at P = 512 needs ~35 MiB.
    """
    if seed not in _NOISE_TABLES:
        _NOISE_TABLES[seed] = NoiseTable(seed=seed, cache_bytes=64 << 20)
    return _NOISE_TABLES[seed]


def corpus_digest(corpus: Corpus) -> str:
    """sha256 of the training and validation bytes: a resumed run must read the same data."""
    h = hashlib.sha256()
    h.update(corpus.train.tobytes())
    h.update(b"|")
    h.update(corpus.valid.tobytes())
    return h.hexdigest()


class FloatRun:
    """A float ByteLM trained by EggRoll (module docstring)."""

    def __init__(self, cfg: TrainConfig, corpus: Optional[Corpus] = None):
        """Build the model, noiser and optimizer; with a corpus also the reader and validation lanes."""
        self.cfg, self.corpus = cfg, corpus
        check_population(cfg.pop_size, cfg.group_size)
        self.es, self.state = ES.create(
            ByteLM, dict(hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers, cell=cfg.cell, head_scale=cfg.head_scale),
            pop_size=cfg.pop_size, seed=cfg.seed, noiser=EggRoll,
            sigma=schedule(cfg.sigma_schedule, cfg.sigma, cfg.epochs),
            lr=schedule(cfg.lr_schedule, cfg.lr, cfg.epochs),
            solver=cfg.optimizer, group_size=cfg.group_size, rank=cfg.rank, noise_reuse=cfg.noise_reuse,
            fitness=cfg.fitness, noise=shared_noise_table(0))
        self.hidden = ByteLM.init_state(self.es.frozen_params, cfg.pop_size)          # (P, L, D) float32
        self.data_state = {"pos": np.zeros(cfg.pop_size // cfg.group_size, np.int64)}
        if corpus is not None:
            self.reader = BatchReader(corpus.train, cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
            self.lanes = plan_lanes(corpus.valid, cfg.eval_lanes, cfg.eval_warmup, context=int(corpus.train[-1]))

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
        """One generation (module docstring); returns the population's train bpb."""
        windows, data_state = self.reader.next(self.data_state)                     # (P, T+1) uint8
        ll, hidden = self.es.forward(self.state, windows[:, :-1], self.hidden, targets=windows[:, 1:])
        raw = ll.sum(axis=1, dtype=np.float64)                                      # (P,) nats
        state = self.es.step(self.state, raw)
        self.state, self.hidden, self.data_state = state, hidden, data_state        # commit together
        return float(-raw.mean() / (self.cfg.tokens_per_update * LN2))

    def _plain(self, tokens, state, reset=None, targets=None):
        return self.es.evaluate(self.state, tokens, state, reset, targets)

    def bpb(self, lanes: Lanes) -> float:
        """bpb of the plain model on a stream laid out in lanes (``npegg.program.evaluate``)."""
        return lanes_bpb(self._plain, lanes, ByteLM.init_state(self.es.frozen_params, lanes.inputs.shape[0]))

    def valid_bpb(self) -> float:
        """bpb of the plain model on the whole validation split."""
        return self.bpb(self.lanes)

    def logits_fn(self, tokens, state):
        """Plain logits for sampling: tokens (1, t), state (1, L, D) or None."""
        if state is None:
            state = ByteLM.init_state(self.es.frozen_params, tokens.shape[0])
        return self._plain(tokens, state)

    # -- checkpoint --------------------------------------------------------------------------------
    def checkpoint_trees(self) -> tuple[dict, dict]:
        """(trees, scalars) that ``restore`` turns back into this exact run."""
        np_ = self.state.noiser_params
        trees = {"params": self.state.params, "opt_state": np_["opt_state"], "data": self.data_state,
                 "hidden": self.hidden}
        return trees, {"epoch": self.state.epoch, "sigma": float(np_["sigma"])}

    def restore(self, trees: dict, scalars: dict) -> None:
        hidden = np.asarray(trees["hidden"])
        if hidden.shape != self.hidden.shape:
            raise ValueError(f"checkpoint hidden states {hidden.shape} do not fit this run {self.hidden.shape}")
        noiser_params = {**self.state.noiser_params, "sigma": float(scalars["sigma"]), "opt_state": trees["opt_state"]}
        self.state = ESState(trees["params"], noiser_params, int(scalars["epoch"]))
        self.hidden = hidden.astype(self.hidden.dtype)
        self.data_state = {"pos": np.asarray(trees["data"]["pos"], dtype=np.int64)}


def make_run(cfg: TrainConfig, corpus: Corpus):
    """The run for ``cfg.mode`` and ``cfg.method``: ``FloatRun``, ``IntRun`` or ``BackpropRun``."""
    if cfg.mode == "int":
        from .int_run import IntRun
        return IntRun(cfg, corpus)
    if cfg.method == "backprop":
        from .backprop_run import BackpropRun
        return BackpropRun(cfg, corpus)
    return FloatRun(cfg, corpus)


@dataclass
class History:
    """Per-epoch metrics; ``valid`` is NaN where no validation ran. Epoch 0 is before training."""
    epoch: list
    train_bpb: list
    valid_bpb: list
    seconds: list

    @classmethod
    def empty(cls) -> "History":
        return cls([], [], [], [])

    def add(self, epoch, train, valid, seconds):
        self.epoch.append(int(epoch))
        self.train_bpb.append(float(train))
        self.valid_bpb.append(float("nan") if valid is None else float(valid))
        self.seconds.append(float(seconds))

    def tree(self) -> dict:
        return {"epoch": np.asarray(self.epoch, np.int64), "train_bpb": np.asarray(self.train_bpb, np.float64),
                "valid_bpb": np.asarray(self.valid_bpb, np.float64), "seconds": np.asarray(self.seconds, np.float64)}

    @classmethod
    def from_tree(cls, t: dict) -> "History":
        return cls(*(np.asarray(t[k]).tolist() for k in ("epoch", "train_bpb", "valid_bpb", "seconds")))

    def last_valid(self) -> Optional[float]:
        v = [x for x in self.valid_bpb if np.isfinite(x)]
        return v[-1] if v else None


def train(run, history: History, on_epoch: Callable = lambda e, t, v: None,
          save: Callable = lambda: None, clock: Callable[[], float] = time.perf_counter,
          on_start: Callable = lambda: None) -> History:
    """Train ``run`` from its current epoch to ``run.cfg.epochs``, validating and saving on schedule.

    Validation runs before the first epoch of a fresh run (epoch 0), every ``eval_every`` epochs
    and after the last; ``save()`` after every ``save_every`` epochs and after the last.
    ``on_start()`` runs before the first epoch, ``on_epoch(epoch, train_bpb, valid_bpb or None)``
    after each. A KeyboardInterrupt
    between epochs leaves ``run`` at the last finished epoch (the caller saves it).
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
