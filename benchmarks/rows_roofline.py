"""Roofline rows: how much of one core's matrix-multiply rate the main job's model achieves.

The ceiling is the machine's own single-core SGEMM rate, measured here: C = A B with A, B
(n, n) float32 costs 2n³ FLOP, so rate = 2n³ / t. The default model's work per *member-byte*
(one member reading one byte) counts the FLOPs of every weight matrix it multiplies by, once::

    F = Σ over matrix leaves W (O × I, not the embedding tables)  2·O·I
      = L·(2·2·D²  +  2·2·m·D²)  +  2·D·V        minGRU (Wz, Wh), MLP D → mD → D, head D → V

(embedding and direct-path rows are gathers, 0 FLOP). At the `npegg train` defaults (D 32,
L 2, m 0, V 256) that is 8 192 + 16 384 = 24 576 FLOP; the elementwise work beside it
(log-softmax ≈ 3V, gates, LayerNorms, the rank-1 terms) is not counted, so a fraction below 1
also measures how much time goes to everything that is not a matmul. A row's figure is::

    fraction = (P · T · F / t_row) ÷ (2n³ / t_sgemm)

with t_row and t_sgemm timed interleaved in the same run (``timing.compare``), so the load of
the moment cancels. Rows: the plain forward (``es.evaluate`` with targets: log p of every byte),
the perturbed forward (``es.forward`` with new noise every call), and the whole ES epoch
(``FloatRun.epoch_step``: read windows, perturbed forward, fitness, update), all at the defaults
over the same P·T member-bytes; and the epoch ÷ the plain forward, the price of ES over
inference on the same bytes (target ≤ 1.3).
"""
from __future__ import annotations

import numpy as np

from .report import Row
from .rows_lm import byte_windows, fresh_epochs
from .rows_parallel import _data as random_bytes
from .timing import compare

VOCAB = 256


def matmul_flops_per_byte(params: dict, es_map: dict) -> int:
    """F = Σ 2·O·I over the model's matrix leaves (es_map MM_PARAM), each read once per byte
    (module docstring); a stacked (L, O, I) leaf counts L·2·O·I. Embedding tables (EMB_PARAM:
    ``emb``, ``direct``) are gathers and vectors (PARAM) elementwise: 0 FLOP here."""
    from npegg.models.common import MM_PARAM
    if isinstance(params, dict):
        return sum(matmul_flops_per_byte(params[k], es_map[k]) for k in params)
    return 2 * int(np.prod(np.shape(params))) if es_map == MM_PARAM else 0


def default_run(s):
    """A FloatRun at the `npegg train` defaults (± ``s.roofline_train``) reading random bytes."""
    from npegg.program.config import TrainConfig
    from npegg.program.data import BatchReader
    from npegg.program.runs import make_run
    cfg = TrainConfig(**dict(s.roofline_train)).resolved()
    run = make_run(cfg, None)
    run.reader = BatchReader(random_bytes(2_000_000), cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
    return cfg, run


def rows(s):
    n = s.roofline_sgemm
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    sgemm_flop = 2 * n ** 3

    def sgemm():
        return a @ b

    cfg, run = default_run(s)
    es, state = run.es, run.state
    P, T = cfg.pop_size, cfg.tokens_per_update
    F = matmul_flops_per_byte(state.params, es.es_map)
    tokens, targets = byte_windows(P, T)
    hidden = run.hidden.copy()
    next_state = fresh_epochs(state)
    sides = {
        "plain": ("plain forward (log p of every byte)", lambda: es.evaluate(state, tokens, hidden, targets=targets)),
        "perturbed": ("perturbed forward, new noise", lambda: es.forward(next_state(), tokens, hidden, targets=targets)),
        "epoch": ("one ES epoch (FloatRun.epoch_step)", run.epoch_step),
    }
    inputs = {"P": P, "T": T, "D": cfg.hidden_dim, "L": cfg.n_layers, "mlp_ratio": cfg.mlp_ratio,
              "direct_path": cfg.direct_path, "cell": cfg.cell, "flop_per_member_byte": F,
              "sgemm_n": n, "dtype": "float32"}
    seconds = {}
    for key, (label, f) in sides.items():
        c = compare(f, sgemm, repeats=s.lm_repeats, min_sample=s.min_sample, budget=s.row_budget)
        t_row, t_sgemm = c.medians()
        seconds[key] = t_row
        rate = sgemm_flop / t_sgemm
        fraction = (P * T * F / t_row) / rate
        yield Row(f"roofline/{key}", "roofline", f"{label}: P·T·F / t", "single-core SGEMM FLOP/s",
                  fraction, None, {**inputs, "sgemm_gflops": round(rate / 1e9, 2),
                                   "achieved_gflops": round(P * T * F / t_row / 1e9, 3)},
                  c.as_dict(), note="F counts matmul FLOPs only (module docstring); the rest of the time is "
                                    "elementwise work, noise and Python")
    c = compare(run.epoch_step, sides["plain"][1], repeats=s.lm_repeats, min_sample=s.min_sample,
                budget=s.row_budget)
    yield Row("roofline/epoch_vs_plain", "roofline", "one ES epoch at the defaults", "plain forward, same P·T bytes",
              c.ratio, ("<=", 1.3), inputs, c.as_dict(),
              note="what ES costs over inference on the same member-bytes: noise, rank-1 terms, fitness, update")
