"""The settings of an ``npegg train`` run: ``TrainConfig``, its checks and the σ / lr schedules.

``TrainConfig.validate`` is the one place a run's settings are checked (the command line turns
its ``ConfigError`` into exit status 2), so the runs and the library below them can trust them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np

from .. import optim
from ..fitness import SHAPERS
from ..models.lm import CELLS

SCHEDULES = ("constant", "linear", "cosine")
METHODS = ("es", "backprop")
EMBEDDING_UPDATES = ("seen", "all")
MAX_SIGMA_SHIFT = 27               # 4 + 27 = 31: the widest shift of an int32 perturbation
MAX_SAMPLE_BYTES = 1_000_000       # the longest sample (--sample-bytes, npegg sample --length): one model step per byte


#: settings added after checkpoints were already being written, with the value those older runs
#: used: a saved config without the key ran with this value, whatever today's default is
LEGACY = {"mlp_ratio": 4, "direct_path": False, "embedding_update": "all"}


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag and what is allowed."""


@dataclass
class TrainConfig:
    """Every setting of a run. Field names are the CLI flags with '-' for '_'.

    The defaults are tuned so that ``npegg train`` with no flags (the shipped corpus, CPython 3.11.7's stdlib source) gets as low
    as it can within about 7 minutes on two cores: 4000 epochs (3.451 bpb in 6 min 49 s; 3000, the
    previous default, 3.498; 2000, the one before, 3.582; lr 0.02 was worse than 0.015 at 4000 epochs:
    3.560 against 3.520 at epoch 2400). What the study showed
    (``benchmarks/lm_study.py``, results in ``benchmarks/lm_study.md``; the runs behind these
    choices in ``benchmarks/lm_tuning_record.md``):

    - one ES estimate is mostly noise: its cosine with the true gradient is ~0.015–0.025 at
      P = 1024, because each member's fitness is the log-likelihood of only T bytes and the
      gradient of so few bytes is mostly their own noise; the cosine grows as √P and as √T, so at
      equal member-bytes no split of P·T·epochs beats another (T = 25 for 4× the epochs ends where
      T = 100 does) — what helps is more member-bytes per second, and model capacity that is cheap
      per byte;
    - so the model is small and cheap: D = 32 with no MLP branch costs ~⅓ of D = 64 with a 4D MLP
      per member-byte and learns as much per epoch (width 32 ≈ 64; the MLP gains a little per
      epoch but not per second);
    - a direct byte → next-byte logit table (``direct_path``, zero at the start) is the cheapest
      capacity there is (one row lookup per byte): without it the defaults end 0.04 higher;
    - leaving each member's unread embedding rows out of its update term
      (``embedding_update = "seen"``) triples the cosine of the embedding's estimate; without it
      the defaults end 0.026 higher;
    - lr 0.015 beats 0.03 (by ~0.025, about the spread between runs that differ only in their
      noise) and 0.0075 (by ~0.1), with the cosine decay; an average of past parameters adds
      nothing once the rate has decayed;
    - σ between 0.003 and 0.03 gives the same estimate (the linear regime); 0.1 is too large;
    - fitness shaping (z-scores, per-group z-scores, centered ranks, pair signs) does not change
      the estimate's quality; g = 8 is as good as g = 2;
    - the cell type (egg or mingru) does not matter for the bpb at this size; the minGRU is the
      default because an epoch is faster (no matmul in its loop over time).
    """
    mode: str = "float"
    method: str = "es"             # float mode: "es" (EggRoll) or "backprop" (runs.backprop_run)
    cell: str = "mingru"           # int mode: always "egg" (nano-egg's int8 model)
    hidden_dim: int = 32
    n_layers: int = 2
    mlp_ratio: int = 0             # float mode: each layer's MLP is D → mD → D; 0 = no MLP branch
    direct_path: bool = True       # float mode: a learned (256, 256) table from each byte to the next's logits
    embedding_update: str = "seen"  # float ES: "seen" leaves each member's unread embedding rows out of the update
    epochs: int = 4000
    pop_size: int = 1024
    group_size: int = 8
    tokens_per_update: int = 100
    rank: int = 1
    sigma: float = 0.03
    lr: float = 0.015
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
        if self.embedding_update not in EMBEDDING_UPDATES:
            bad("embedding-update", f"must be one of {', '.join(EMBEDDING_UPDATES)}; got {self.embedding_update!r}")
        if not isinstance(self.direct_path, bool):
            bad("direct-path", f"must be True or False; got {self.direct_path!r}")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, int) or self.mlp_ratio < 0:
            bad("mlp-ratio", f"must be an integer >= 0 (0: no MLP branch); got {self.mlp_ratio}")
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
        for name in ("eval_every", "save_every", "sample_bytes", "eval_warmup", "noise_reuse"):
            if int(getattr(self, name)) < 0:
                bad(name.replace("_", "-"), f"must be >= 0; got {getattr(self, name)}")
        if self.sample_bytes > MAX_SAMPLE_BYTES:    # 10⁶ is minutes after the last epoch, 10¹¹ never ends
            bad("sample-bytes", f"must be between 0 and {MAX_SAMPLE_BYTES:,} bytes; got {self.sample_bytes}")
        if not 0 <= self.sigma_shift <= MAX_SIGMA_SHIFT:
            bad("sigma-shift", f"must be an integer in 0..{MAX_SIGMA_SHIFT} (noise is shifted right by 4 + it, "
                               f"at most 31 bits; beyond that every perturbation is 0); got {self.sigma_shift}")
        if not (np.isfinite(self.head_scale) and self.head_scale >= 0):
            bad("head-scale", f"must be a number >= 0; got {self.head_scale}")
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            bad("alpha", f"must be a finite number > 0; got {self.alpha}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config saved in a checkpoint (``asdict`` of one); keys this version does not know are dropped.

        Each value must have its field's type (an int where the default is an int, …; None only
        where the field is optional): ConfigError naming the key otherwise, so a hand-edited
        config cannot reach the run.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"the saved training config must be a JSON object, found {type(d).__name__}")
        kinds = {f.name: f.type for f in fields(cls)}
        default = cls()
        for k, v in d.items():
            if k not in kinds:
                continue
            want = type(getattr(default, k))
            optional = "Optional" in str(kinds[k])
            if v is None and optional:
                continue
            if optional and getattr(default, k) is None:
                want = int if "int" in str(kinds[k]) else str
            if want is bool:
                ok = isinstance(v, bool)
            else:
                ok = (isinstance(v, want) and not isinstance(v, bool)) or (want is float and isinstance(v, int)
                                                                           and not isinstance(v, bool))
            if not ok:
                raise ConfigError(f"the saved training config has {k} = {v!r}, which is not "
                                  f"{'None or ' if optional else ''}{'an' if want is int else 'a'} {want.__name__}")
        return cls(**{**LEGACY, **{k: v for k, v in d.items() if k in kinds}})


def schedule(kind: str, value: float, epochs: int):
    """σ or lr at epoch t: ``value`` (constant), ``value · (1 − t/E)`` (linear) or
    ``value · ½(1 + cos(π t/E))`` (cosine), E = ``epochs``; a float for constant, else a schedule
    function of t (``npegg.optim``)."""
    if kind == "constant":
        return value
    if kind == "linear":
        return optim.linear_schedule(value, 0.0, epochs)
    return optim.cosine_decay_schedule(value, epochs)
