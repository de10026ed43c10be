"""The inputs of every row, in one place: the full run and the few-second ``--quick`` smoke run.

Why these inputs:

- **Population forward.** "The same inputs" for a population forward are x (P, B, D): member p
  gets its own B input rows, and the plain forward is the unperturbed model on exactly that x.
  EGGROLL's extra cost has two parts: per member *per forward* (hash the start indices, copy
  the member's (a + b)·r noise entries and its bias noise), and per *row* (the rank-r term
  (x B) Aᵀ, done by NumPy's elementwise machinery, not BLAS), while the shared matmul costs
  2·I·O flops per row in BLAS. So the ratio falls as B grows, towards a floor set by the
  rank-r term. We report B = 1 (one row per member, the worst case: one decoding step of a
  recurrent model) and B = 16 (a chunk of rows per member); the LM rows use `npegg train`'s
  T = 100 tokens per member per update.
- **Noise is rebuilt on every call.** The perturbed Linear/MLP side uses
  ``NoiseTable(cache_bytes=0)``, so every repeat hashes the start indices and copies every
  member's noise slices from the table; only the table itself (a fixed 32 MiB constant, like
  the weights) is built once per process. The LM rows move to a new epoch on every call instead
  (fresh noise, built once per forward and reused across the T steps, as in training).
- **The update** (``es.step``: fitness shaping, noise rebuilt, the estimate, Adam) is compared
  with one perturbed forward of the same population at B = 1 and B = 16. Its estimate
  Σₙ wₙ Âₙ Bₙᵀ sums the weights of antithetic partners first (they share their noise), so it is
  one (a × P/2)(P/2 × b) GEMM: half the flops of a B = 1 forward's shared matmul.
  OpenES ÷ EggRoll is one generation (forward + update) of each.
- **float32** throughout, P = 1024 as the issue asks, BLAS on one thread as `npegg train` runs
  it, and the figure is the ratio of process CPU times (= idle-machine wall time on one
  thread; ``timing``), with the wall-clock ratio beside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    pop: int = 1024                  # P for the Linear/MLP rows
    widths: tuple = (256, 1024)      # D: Linear D → D; MLP D → D → D
    ranks: tuple = (1, 4, 16)
    batches: tuple = (1, 16)         # B input rows per member
    update_width: int = 256          # the update ÷ forward and OpenES ÷ EggRoll rows
    repeats: int = 7                 # interleaved A/B samples per row; the figure is the median
    min_sample: float = 0.05         # seconds: a sample repeats a call until it lasts this long
    row_budget: float = 10.0         # seconds: slower rows get fewer repeats (never fewer than 3)
    # language model rows
    lm_hidden: int = 256             # the width; `npegg train` defaults to 64
    lm_layers: int = 1
    lm_pop: int = 256                # half `npegg train`'s default population (512), for time …
    lm_tokens: int = 100             # … and its tokens per member per update (T)
    lm_repeats: int = 5
    scan_pop: int = 256              # minGRU scan vs loop: P, T, D
    scan_tokens: int = 128
    scan_hidden: int = 256
    # int8 rows
    intmm_shapes: tuple = ((1024, 256, 1024), (1024, 1024, 256))  # (M, K, N): x (M, K) @ W (K, N)
    int8_hidden: int = 256
    int8_pop: int = 256              # as the LM rows: the int8 model runs step by step, so small P favours float
    int8_tokens: int = 100
    int8_noise_log2: int = 25        # QEggRoll's default int8 table (32 MiB)
    int8_epoch_train: tuple = ()     # int ÷ float epoch: TrainConfig fields that differ from the defaults
    # peak memory of `npegg train`: the defaults, but 2 epochs instead of 200. Two epochs run every
    # phase of the default run (baselines, epochs, validation, checkpoint, sample) and memory does
    # not grow with epochs; `--train-epochs 0` runs the true default (many minutes).
    train_args: tuple = ("--epochs", "2")
    train_timeout: float = 1800.0
    # workers rows: `npegg train`'s defaults on 1 and 2 workers (benchmarks.rows_parallel)
    workers_train: tuple = ()                # TrainConfig fields that differ from the defaults
    workers_epochs: int = 3                  # epochs per timed sample
    workers_repeats: int = 5
    workers_data_bytes: int = 3_000_000
    workers_skip_ray: bool = False
    # roofline rows: `npegg train`'s defaults (± these TrainConfig fields) against an (n, n) SGEMM
    roofline_train: tuple = ()
    roofline_sgemm: int = 1024

    def as_dict(self) -> dict:
        return asdict(self)


FULL = Settings()

QUICK = Settings(pop=64, widths=(64,), ranks=(1, 4), batches=(1, 4), update_width=64, repeats=3,
                 min_sample=0.0, row_budget=1.0, lm_hidden=32, lm_layers=1, lm_pop=16, lm_tokens=8, lm_repeats=3,
                 scan_pop=8, scan_tokens=16, scan_hidden=32, intmm_shapes=((64, 64, 64),),
                 int8_hidden=32, int8_pop=8, int8_tokens=4, int8_noise_log2=18,
                 int8_epoch_train=(("pop_size", 64), ("hidden_dim", 16), ("n_layers", 1), ("tokens_per_update", 16)),
                 train_args=("--epochs", "1", "--hidden-dim", "16", "--pop-size", "16", "--max-docs", "20"),
                 train_timeout=300.0, workers_train=(("pop_size", 64), ("hidden_dim", 16), ("n_layers", 1),
                                                     ("tokens_per_update", 16)),
                 workers_epochs=1, workers_repeats=3, workers_data_bytes=100_000, workers_skip_ray=True,
                 roofline_train=(("pop_size", 64), ("hidden_dim", 16), ("n_layers", 1), ("tokens_per_update", 16)),
                 roofline_sgemm=128)
