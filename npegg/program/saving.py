"""Saving a run of ``npegg train``: its checkpoint and its metrics together, at one epoch.

    save()   checkpoint.npz   params, optimizer, data position, hidden states, history to epoch e
             metrics.csv      the history, one row per epoch, to epoch e
             metrics.json     config, corpus, baselines, the result at epoch e, the history

All three are written while stop signals are held (``stopping``), so a Ctrl-C, SIGTERM or SIGHUP
during a save is acted on when it is complete, and each goes through ``atomic_write``. The first
save of a run removes what an earlier run left in the folder (its metrics, unless this run
continues it; any ``sample.txt`` and ``curve.png``, which describe an older epoch), so the folder
never holds one run's checkpoint beside another's files. Only a ``kill -9`` between the checkpoint
and the metrics can leave the metrics one save behind; the next run in the folder rewrites them.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .. import __version__
from .blas import blas_config
from .checkpoint import save_checkpoint
from .commands import CHECKPOINT, corpus_digest
from .report import write_metrics
from .run_folder import METRICS, REPORTS, clear_outputs
from .runs.backprop_run import data_bytes_per_epoch, member_bytes_per_epoch
from .stopping import signals_held


def summary(run, history, cfg, corpus, base) -> dict:
    """metrics.json's summary: config, corpus, baselines and the result at the history's last epoch."""
    done = history.epoch[-1] - history.epoch[0]
    secs = history.seconds[-1]
    rate = member_bytes_per_epoch(cfg) * max(done, 1) / max(secs, 1e-9)           # member-bytes / s
    data_rate = data_bytes_per_epoch(cfg) * max(done, 1) / max(secs, 1e-9)        # data-stream bytes / s
    return {"npegg": __version__, "config": asdict(cfg), "corpus": {"name": corpus.name, "description": corpus.description},
            "validation": run.lanes.describe(), "baselines": base,
            "result": {"epoch": history.epoch[-1], "complete": history.epoch[-1] == cfg.epochs,
                       "valid_bpb": history.valid_bpb[-1], "train_bpb": history.train_bpb[-1],
                       "seconds": secs, "population_bytes_per_second": rate,
                       "data_bytes_per_second": data_rate, "member_bytes_per_second": rate}}


def save_checkpoint_of(run, history, cfg, corpus, out: Path) -> None:
    """``out/checkpoint.npz``: the run's trees, its history, and the config, data digest and BLAS it ran with."""
    trees, scalars = run.checkpoint_trees()
    trees = {**trees, "history": history.tree()}
    save_checkpoint(out / CHECKPOINT, trees, scalars=scalars, fingerprint=run.fingerprint(),
                    config={"train": asdict(cfg), "corpus": {"name": corpus.name, "sha256": corpus_digest(corpus),
                                                             "description": corpus.description},
                            "npegg": __version__, "blas": blas_config()})


class Saver:
    """``saver()`` saves ``run`` and ``history`` (cut back to the run's epoch) into ``out`` as the module
    says. ``here``: the run continues the checkpoint already in ``out``. ``epoch`` is the epoch of this
    run's checkpoint in the folder (None before its first save)."""

    def __init__(self, run, history, cfg, corpus, base, out: Path, here: bool):
        self.run, self.history, self.cfg, self.corpus, self.base = run, history, cfg, corpus, base
        self.out, self.here = out, here
        self.epoch = run.epoch if here else None
        self.cleared = False

    def metrics(self, history) -> None:
        """metrics.csv and metrics.json of ``history``."""
        write_metrics(self.out, history, summary(self.run, history, self.cfg, self.corpus, self.base))

    def __call__(self) -> None:
        with signals_held():
            history = self.history.upto(self.run.epoch)
            if not self.cleared:
                clear_outputs(self.out, REPORTS + (() if self.here else METRICS))
                self.cleared = True
            save_checkpoint_of(self.run, history, self.cfg, self.corpus, self.out)
            self.metrics(history)
            self.epoch = self.run.epoch
