"""What a training run leaves behind besides its checkpoint: metrics (CSV, JSON), a curve, a table.

The curve needs matplotlib, which npegg does not depend on: it is imported here, lazily, and
when it is missing ``plot_curve`` returns None and the caller prints a one-line note.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .baselines import NAMES
from .progress import format_table


def results_rows(baselines: dict, valid_bpb: float, label: str) -> list:
    """(name, bpb) rows: the baselines in order, then this run."""
    return [(NAMES[k], v) for k, v in baselines.items()] + [(label, valid_bpb)]


def results_table(baselines: dict, valid_bpb: float, label: str) -> str:
    """The final table: every baseline and the run, on the same validation bytes."""
    return format_table(results_rows(baselines, valid_bpb, label), headers=("validation bytes", "bpb"))


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def write_metrics(out: Path, history, summary: dict) -> tuple[Path, Path]:
    """metrics.csv (one row per epoch) and metrics.json (summary + history). NaN is written as empty / null."""
    csv_path, json_path = out / "metrics.csv", out / "metrics.json"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_bpb", "valid_bpb", "seconds"])
        for row in zip(history.epoch, history.train_bpb, history.valid_bpb, history.seconds):
            w.writerow(["" if _finite(v) is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row])
    data = {**summary, "history": {k: [_finite(v) for v in getattr(history, k)]
                                   for k in ("epoch", "train_bpb", "valid_bpb", "seconds")}}
    json_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return csv_path, json_path


def plot_curve(path: Path, history, baselines: dict, title: str):
    """Train and validation bpb against epochs with the baselines as lines; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ep = [e for e, t in zip(history.epoch, history.train_bpb) if math.isfinite(t)]
    ax.plot(ep, [t for t in history.train_bpb if math.isfinite(t)], label="train (population)", lw=1)
    ev = [(e, v) for e, v in zip(history.epoch, history.valid_bpb) if math.isfinite(v)]
    ax.plot([e for e, _ in ev], [v for _, v in ev], "o-", label="validation", lw=1.5)
    for (k, v), style in zip(baselines.items(), (":", "--", "-.", ":", "--")):
        if k != "uniform":
            ax.axhline(v, ls=style, color="grey", lw=0.8)
            ax.text(ax.get_xlim()[1] if ep else 0, v, f" {k}", va="center", fontsize=7, color="grey")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per byte")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
