"""``npegg train``: check the flags, read the data, build or resume the run, train it, report.

Every flag is checked, and the data read, before any training starts. Flags that may differ on
``--resume`` (``RESUMABLE``) change how long the run goes and what it reports, not its maths.
An interrupt (Ctrl-C) saves the last finished epoch and exits 130; ``--resume`` continues it.
"""
from __future__ import annotations

import datetime
import importlib.util
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..tree import flatten
from .baselines import baselines as measure_baselines
from .atomic import remove_stale_temps
from .blas import blas_config, config_differences
from .checkpoint import RunDirError, prepare_run_dir, save_checkpoint
from .commands import (CHECKPOINT, InputError, UsageError, checkpoint_path, corpus_digest, explicit_flags,
                       read_checkpoint, read_corpus, restore_run, saved_config)
from .config import ConfigError, TrainConfig
from .data import DataError, absolute_path
from .evaluate import sample_bytes
from .loop import Diverged, History, train
from .preflight import PreflightError, check_disk, check_memory, disk_full, disk_full_message, short_name
from .progress import Progress, format_duration, format_rate, format_table
from .report import plot_curve, results_table, write_metrics, write_sample
from .runs import make_run
from .runs.backprop_run import data_bytes_per_epoch, member_bytes_per_epoch
from .shard import ParallelRun, check_workers
from ..parallel import WorkerError

#: flags that may differ when resuming: they change how long the run goes and what it reports, not its maths
RESUMABLE = ("epochs", "eval_every", "save_every", "sample_bytes")
INT_ONLY, FLOAT_ONLY = ("sigma_shift", "alpha"), ("lr", "sigma", "optimizer", "lr_schedule", "sigma_schedule",
                                                   "head_scale", "mlp_ratio", "direct_path",
                                                   "embedding_update")


def _train_config(args):
    """(config, checkpoint or None, run folder) from the flags, checked before anything is read."""
    given = explicit_flags(args)
    ckpt = None
    if "data" in given:                 # stored absolute, so --resume and eval work from any folder
        try:
            given["data"] = str(absolute_path(given["data"]))
        except DataError as e:
            raise UsageError(f"--data: {e}") from e
    if args.resume:
        ckpt = read_checkpoint(args.resume)
        if "train" not in ckpt.config:
            raise InputError(f"--resume: {checkpoint_path(args.resume)} was not written by `npegg train` "
                             f"(it has no training config), so there is no run to continue")
        saved = saved_config(ckpt, args.resume)
        clash = [k for k, v in given.items() if k not in RESUMABLE + ("data",) and v != getattr(saved, k)]
        if clash:
            lines = [f"--{k.replace('_', '-')}: checkpoint {getattr(saved, k)!r}, command line {given[k]!r}" for k in clash]
            raise UsageError(f"--resume {args.resume} continues that run, but these settings differ from the "
                             f"checkpoint's (drop them, or start a new run):\n  " + "\n  ".join(lines))
        cfg = replace(saved, **{k: given[k] for k in RESUMABLE if k in given})
        decaying = cfg.mode == "float" and (cfg.lr_schedule != "constant" or cfg.sigma_schedule != "constant")
        if cfg.epochs != saved.epochs and decaying:
            raise UsageError(f"--epochs: the checkpoint's schedules decay over {saved.epochs} epochs "
                             f"(--lr-schedule {cfg.lr_schedule}, --sigma-schedule {cfg.sigma_schedule}); "
                             f"a resumed run keeps them, so --epochs must stay {saved.epochs}")
        if int(ckpt.scalars.get("epoch", 0)) > cfg.epochs:
            raise UsageError(f"--epochs {cfg.epochs}: the checkpoint is already at epoch {ckpt.scalars['epoch']}")
        if "data" in given:
            cfg = replace(cfg, data=given["data"])
    else:
        if given.get("mode") == "int" and "cell" not in given:
            given["cell"] = "egg"                               # the int8 model has only nano-egg's cell
        cfg = TrainConfig(**given)
        if cfg.mode == "int":
            wrong = [k for k in FLOAT_ONLY if k in given]
            if wrong:
                raise UsageError(f"--{wrong[0].replace('_', '-')} has no meaning in --mode int (Q-EGGROLL moves int8 "
                                 f"weights by ±1); its knobs are --sigma-shift and --alpha")
        elif any(k in given for k in INT_ONLY):
            k = next(k for k in INT_ONLY if k in given)
            raise UsageError(f"--{k.replace('_', '-')} only applies to --mode int")
    try:
        cfg.validate()
    except ConfigError as e:
        raise UsageError(str(e)) from e
    cfg = cfg.resolved()
    if args.out:
        out = Path(args.out)
    elif args.resume:
        out = checkpoint_path(args.resume).parent
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = short_name(Path(cfg.data).stem) if cfg.data else "stdlib"
        out = Path("runs") / f"{name}-{cfg.mode}-{cfg.cell}-{stamp}"
        n = 1
        while out.exists():
            out, n = Path("runs") / f"{name}-{cfg.mode}-{cfg.cell}-{stamp}-{n}", n + 1
    resuming_here = args.resume and out.resolve() == checkpoint_path(args.resume).parent.resolve()
    if out.exists() and (not out.is_dir() or (not resuming_here and not args.overwrite)):
        try:
            prepare_run_dir(out, overwrite=False)               # raises with the standard message
        except RunDirError as e:
            raise UsageError(f"--out: {e}") from e
    try:
        check_memory(cfg)
        check_disk(cfg, out)                                    # a checkpoint beside the one it replaces
    except PreflightError as e:
        raise UsageError(str(e)) from e
    return cfg, ckpt, out


def _save(run, history, cfg, corpus, out: Path) -> None:
    trees, scalars = run.checkpoint_trees()
    trees = {**trees, "history": history.tree()}
    save_checkpoint(out / CHECKPOINT, trees, scalars=scalars, fingerprint=run.fingerprint(),
                    config={"train": asdict(cfg), "corpus": {"name": corpus.name, "sha256": corpus_digest(corpus),
                                                             "description": corpus.description},
                            "npegg": __version__, "blas": blas_config()})


def cmd_train(args, stdout) -> int:
    """``npegg train``: a new or resumed run to ``--epochs``, then its report; returns the exit status."""
    cfg, ckpt, out = _train_config(args)
    if cfg.method == "backprop" and args.workers not in (None, 1):
        raise UsageError(f"--workers: --method backprop runs in one process; got {args.workers}")
    try:
        workers = check_workers(cfg, args.workers)
        check_memory(cfg, workers=workers)                     # each worker holds a replica of the run
    except (ValueError, PreflightError) as e:
        raise UsageError(str(e)) from e
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray: Ray is not installed (pip install 'npegg[ray]')")
    corpus = read_corpus(cfg)
    if ckpt is not None and ckpt.config.get("corpus", {}).get("sha256") != corpus_digest(corpus):
        raise InputError(f"--resume: the data ({cfg.data or 'the shipped default corpus'}, --max-docs {cfg.max_docs}) "
                         f"is not the data the checkpoint was trained on ({ckpt.config.get('corpus', {}).get('description')})")
    try:
        run = make_run(cfg, corpus)
    except DataError as e:
        raise InputError(f"--data: {e}") from e
    history = History.empty()
    if ckpt is not None:
        restore_run(run, ckpt, args.resume)
        history = saved_history(ckpt, args.resume, run.epoch)
        differs = config_differences(ckpt.config["blas"], blas_config()) if isinstance(ckpt.config.get("blas"), dict) else []
        if differs:
            print(f"npegg train: warning: this machine's NumPy/BLAS differs from the checkpoint's ({'; '.join(differs)}); "
                  f"float results continue, but not bit for bit", file=sys.stderr)
    out = prepare_run_dir(out, overwrite=True)
    remove_stale_temps(out)                                     # left by a run killed in the middle of a save
    say = lambda text="": print(text, file=stdout, flush=True)  # noqa: E731
    if cfg.method == "es":
        run = ParallelRun(run, corpus.train, workers, args.engine, say=say)
    try:
        return _run_and_report(run, history, cfg, corpus, ckpt, out, say, stdout)
    except OSError as e:
        if not disk_full(e):
            raise
        raise InputError(disk_full_message(e, out, run.epoch)) from None
    finally:
        if isinstance(run, ParallelRun):
            run.close()                                         # no worker outlives the command


def _run_and_report(run, history, cfg, corpus, ckpt, out, say, stdout) -> int:
    n_params = sum(int(np.size(v)) for v in flatten(run.checkpoint_trees()[0]["params"]).values())
    say(f"npegg {__version__} · {cfg.mode} mode · {cfg.cell} cell · hidden {cfg.hidden_dim} × {cfg.n_layers} "
        f"layer{'s' if cfg.n_layers > 1 else ''} · {n_params:,} parameters")
    say(f"corpus {corpus.name}: {corpus.description}")
    say(f"validation: {run.lanes.describe()}")
    base = measure_baselines(corpus.train, corpus.valid)
    say("baselines on the validation bytes:")
    say(format_table([(k, v) for k, v in base.items()], headers=("method", "bpb")))
    how = (f"sigma {cfg.sigma} ({cfg.sigma_schedule}), {cfg.optimizer} lr {cfg.lr} ({cfg.lr_schedule})"
           if cfg.mode == "float" else f"Q-EGGROLL, sigma shift {cfg.sigma_shift}, alpha {cfg.alpha}")
    if cfg.method == "backprop":
        say(f"backprop through time: batch of {cfg.pop_size // cfg.group_size} streams (the bytes ES reads with "
            f"population {cfg.pop_size} in groups of {cfg.group_size}), {cfg.optimizer} lr {cfg.lr} ({cfg.lr_schedule}); "
            f"{cfg.tokens_per_update} bytes per stream per step")
    else:
        say(f"ES: population {cfg.pop_size} in groups of {cfg.group_size}, rank {cfg.rank}, {how}; "
            f"{cfg.tokens_per_update} bytes per member per epoch")
    say(f"run folder: {out}" + (f" (resuming at epoch {run.epoch})" if ckpt is not None else ""))
    if isinstance(run, ParallelRun):
        where = "this process" if run.workers == 1 and run.engine_name == "local" else f"{run.engine_name} engine"
        say(f"workers: {run.workers} ({where}); members in chunks of {run.chunk}")

    progress = Progress(cfg.epochs, data_bytes_per_epoch(cfg), stream=stdout, every=cfg.eval_every,
                        start_epoch=run.epoch, member_bytes_per_epoch=member_bytes_per_epoch(cfg))
    save = lambda: _save(run, history, cfg, corpus, out)  # noqa: E731
    try:                      # overflow shows up as Diverged below, not as NumPy's warnings
        if isinstance(run, ParallelRun):
            run.say = progress.message                          # a lost worker is reported between progress lines
            run.start()                                         # workers start before the clock does
        with np.errstate(over="ignore", invalid="ignore"):
            history = train(run, history, on_epoch=lambda e, t, v: progress.update(e, t, v), save=save,
                            on_start=lambda: setattr(progress, "t0", progress.clock()))  # rate and ETA from epoch 1
    except WorkerError as e:
        progress.close()
        if not (out / CHECKPOINT).exists():                     # e.g. the workers never started: nothing to resume
            raise InputError(f"{e}\nthe run stopped at epoch {run.epoch}; no checkpoint was written yet") from e
        raise InputError(f"{e}\nthe run stopped at epoch {run.epoch}; the last checkpoint is {out / CHECKPOINT}; "
                         f"continue with  npegg train --resume {out}") from e
    except KeyboardInterrupt:
        progress.close()
        save()
        say(f"interrupted: epoch {run.epoch} saved to {out / CHECKPOINT}; continue with  npegg train --resume {out}")
        return 130
    except Diverged as e:
        progress.close()
        kept = f"the last good checkpoint ({out / CHECKPOINT}) is kept" if (out / CHECKPOINT).exists() else "nothing was saved"
        raise InputError(f"{e}; {kept}. Try a smaller --sigma or --lr") from e
    progress.close()

    valid = history.valid_bpb[-1]
    done = history.epoch[-1] - (history.epoch[0] if history.epoch else 0)
    secs = history.seconds[-1]
    rate = member_bytes_per_epoch(cfg) * max(done, 1) / max(secs, 1e-9)           # member-bytes / s
    data_rate = data_bytes_per_epoch(cfg) * max(done, 1) / max(secs, 1e-9)        # data-stream bytes / s
    say(results_table(base, valid, f"npegg {cfg.mode}/{cfg.cell}, epoch {run.epoch}"))
    sample = b""
    if cfg.sample_bytes:
        sample = sample_bytes(run.logits_fn, b"", cfg.sample_bytes, temperature=0.8, seed=cfg.seed)
        write_sample(out / "sample.txt", sample)
    summary = {"npegg": __version__, "config": asdict(cfg), "corpus": {"name": corpus.name, "description": corpus.description},
               "validation": run.lanes.describe(), "baselines": base,
               "result": {"epoch": run.epoch, "valid_bpb": valid, "train_bpb": history.train_bpb[-1],
                          "seconds": secs, "population_bytes_per_second": rate,
                          "data_bytes_per_second": data_rate, "member_bytes_per_second": rate}}
    write_metrics(out, history, summary)
    png = plot_curve(out / "curve.png", history, base, f"{corpus.name}: {cfg.mode}/{cfg.cell}, D={cfg.hidden_dim}, "
                     f"L={cfg.n_layers}, P={cfg.pop_size}")
    say(f"{format_duration(secs)} of training: {format_rate(data_rate)} of the data stream, "
        f"{format_rate(rate)} member-bytes (through {'the model' if cfg.method == 'backprop' else 'every member'})")
    say(f"wrote {out / CHECKPOINT}, metrics.csv, metrics.json" + (", sample.txt" if sample else "")
        + (", curve.png" if png else ""))
    if png is None:
        say("learning curve: skipped, matplotlib is not installed (pip install 'npegg[plot]')")
    if sample:
        text = sample.replace(b"\0", b"\n\n").decode("utf-8", errors="replace")
        say(f"sample (temperature 0.8):\n{text[:600]}")
    return 0


def saved_history(ckpt, where, epoch: int) -> History:
    """The checkpoint's history: four 1-D arrays of one length, epochs increasing, none past ``epoch``."""
    t = ckpt.trees.get("history")
    names = ("epoch", "train_bpb", "valid_bpb", "seconds")
    ok = isinstance(t, dict) and all(k in t and np.ndim(t[k]) == 1 for k in names)
    if ok:
        n = {len(t[k]) for k in names}
        e = np.asarray(t["epoch"])
        ok = len(n) == 1 and e.dtype.kind in "iu" and bool(np.all(np.diff(e) > 0)) and (e.size == 0 or e[-1] <= epoch)
    if not ok:
        raise InputError(f"{checkpoint_path(where)}: damaged checkpoint, its history is not four 1-D arrays of "
                         f"one length with increasing epochs up to {epoch}")
    return History.from_tree(t)
