"""``npegg train``: check the flags, read the data, build or resume the run, train it, report.

Every flag is checked, and the data read, before any training starts. Flags that may differ on
``--resume`` (``RESUMABLE``) change how long the run goes and what it reports, not its maths.

The run folder is this process's alone from before anything is written in it (``run_folder``).
Every save writes the checkpoint and the metrics together, at the same epoch (``_Saver``). A stop
(Ctrl-C, SIGTERM, SIGHUP: ``stopping``) saves the last finished epoch, prints one line and exits
130, 143 or 129; ``--resume`` continues it. ``--resume`` of a file other than its folder's
``checkpoint.npz`` (a backup) continues into ``--out`` or a new folder, never over the newer run.
"""
from __future__ import annotations

import datetime
import importlib.util
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..tree import flatten
from .baselines import baselines as measure_baselines
from .atomic import remove_stale_temps
from .blas import blas_config, config_differences
from .checkpoint import RunDirError, check_run_dir
from .commands import (CHECKPOINT, InputError, UsageError, checkpoint_path, corpus_digest, explicit_flags,
                       read_checkpoint, read_corpus, restore_run, saved_config)
from .config import ConfigError, TrainConfig
from .data import DataError, absolute_path
from .evaluate import sample_bytes
from .loop import Diverged, History, train
from .preflight import PreflightError, check_disk, check_memory, check_noise, disk_full, disk_full_message, short_name
from .progress import Progress, format_duration, format_rate, format_table
from .report import plot_curve, results_table, write_sample
from .run_folder import FolderBusy, claim, claim_new, contents, in_use
from .runs import make_run
from .runs.backprop_run import data_bytes_per_epoch, member_bytes_per_epoch
from .saving import Saver, summary
from .shard import ParallelRun, check_workers
from .stopping import signals_held, stopped_by, exit_status, stopping
from ..parallel import WorkerError

#: flags that may differ when resuming: they change how long the run goes and what it reports, not its maths
RESUMABLE = ("epochs", "eval_every", "save_every", "sample_bytes")
INT_ONLY, FLOAT_ONLY = ("sigma_shift", "alpha"), ("lr", "sigma", "optimizer", "lr_schedule", "sigma_schedule",
                                                   "head_scale", "mlp_ratio", "direct_path",
                                                   "embedding_update")
MODEL_SHAPE = ("head_scale", "mlp_ratio", "direct_path")            # settings of the float ByteLM, none of the EGG
ES_ONLY = ("sigma", "sigma_schedule", "rank", "embedding_update")    # the noise: none in --method backprop


def _train_config(args):
    """(config, checkpoint or None, run folder) from the flags, checked before anything is read."""
    given = explicit_flags(args)
    ckpt = None
    if args.resume is not None and not args.resume.strip():    # "" is no path, not "no --resume"
        raise UsageError(f"--resume must name a run folder or its checkpoint.npz; got {args.resume!r} "
                         f"(leave --resume out for a new run)")
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
                flag = "--" + wrong[0].replace("_", "-")
                why = ("the int8 model is nano-egg's EGG, set by --hidden-dim and --n-layers"
                       if wrong[0] in MODEL_SHAPE else "Q-EGGROLL moves int8 weights by ±1; its knobs are --sigma-shift "
                                                       "and --alpha")
                raise UsageError(f"{flag} has no meaning in --mode int ({why})")
        elif any(k in given for k in INT_ONLY):
            k = next(k for k in INT_ONLY if k in given)
            raise UsageError(f"--{k.replace('_', '-')} only applies to --mode int")
        elif cfg.method == "backprop" and any(k in given for k in ES_ONLY):
            k = next(k for k in ES_ONLY if k in given)
            raise UsageError(f"--{k.replace('_', '-')} has no meaning with --method backprop (its gradient is exact: "
                             f"no noise is drawn); --pop-size / --group-size still set its batch")
    try:
        cfg.validate()
    except ConfigError as e:
        raise UsageError(str(e)) from e
    cfg = cfg.resolved()
    where = _where(args, cfg)
    target = where.out or Path("runs") / where.stem
    if cfg.data and Path(cfg.data).is_dir():
        data, folder = Path(cfg.data).resolve(), target.absolute().resolve()
        if folder == data or data in folder.parents:
            flag = f"--out {target}" if where.out else f"the default run folder {target}"
            raise UsageError(f"{flag} is inside --data {cfg.data}: the run's own files would become part of "
                             f"its corpus; choose an --out outside it")
    if where.out is not None and where.out.exists() and not where.out.is_dir():
        raise UsageError(f"--out: {where.out} exists and is a file, not a run folder; choose another --out")
    try:
        check_memory(cfg)
        check_noise(cfg)
    except PreflightError as e:
        raise UsageError(str(e)) from e
    return cfg, ckpt, where


@dataclass
class _Where:
    """Where a run writes: ``out`` (None: a new folder ``runs/<stem>``), and whether it continues the
    checkpoint of that very folder (``here``); ``source`` is the checkpoint resumed from."""
    out: Path | None
    stem: str
    here: bool
    source: Path | None


def _where(args, cfg) -> _Where:
    """The run folder: --out; else a resumed folder's own; else (a fresh run, or a resume from a file
    that is not its folder's checkpoint.npz, which must not write over that folder's newer run) a new one."""
    source = checkpoint_path(args.resume) if args.resume else None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{short_name(Path(cfg.data).stem) if cfg.data else 'stdlib'}-{cfg.mode}-{cfg.cell}-{stamp}"
    if args.out is not None and not args.out.strip():
        raise UsageError(f"--out must name a folder; got {args.out!r} (leave --out out for a new folder under runs/)")
    out = Path(args.out).expanduser() if args.out else (source.parent if source is not None and source.name == CHECKPOINT else None)
    here = (source is not None and out is not None and source.name == CHECKPOINT
            and out.absolute().resolve() == source.parent.absolute().resolve())
    return _Where(out, stem, here, source)


def _claim(args, where: _Where):
    """Lock the run folder (``run_folder.claim``), then check under the lock that it may be written."""
    flag = f"--out {where.out}" if args.out else (f"--resume {args.resume}" if where.here else "--out")
    try:
        if where.out is not None and where.out.is_dir() and not where.here and not args.overwrite \
                and contents(where.out):                # someone's folder: refused, and no lock file left in it
            busy = in_use(where.out)
            if busy:
                raise busy
            check_run_dir(where.out)
        folder = claim(where.out) if where.out is not None else claim_new(Path("runs"), where.stem)
    except RunDirError as e:
        raise UsageError(f"--out: {e}") from e
    except FolderBusy as e:
        todo = ("wait for it to finish before resuming it, or continue it in a new folder with --out NEW"
                if where.here and not args.out else "wait for it to finish, or choose another --out")
        raise UsageError(f"{flag}: {e}; {todo}") from e
    except OSError as e:
        raise UsageError(f"{flag}: cannot write there ({e.strerror or e})") from e
    if not where.here and not args.overwrite and contents(folder.path):   # filled since the first look
        folder.release()
        try:
            check_run_dir(folder.path)
        except RunDirError as e:
            raise UsageError(f"--out: {e}") from e
    return folder


def cmd_train(args, stdout) -> int:
    """``npegg train``: a new or resumed run to ``--epochs``, then its report; returns the exit status."""
    cfg, ckpt, where = _train_config(args)
    if cfg.method == "backprop" and args.workers not in (None, 1):
        raise UsageError(f"--workers: --method backprop runs in one process; got {args.workers}")
    try:
        workers = check_workers(cfg, args.workers)
        check_memory(cfg, workers=workers)                     # each worker holds a replica of the run
    except (ValueError, PreflightError) as e:
        raise UsageError(str(e)) from e
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray: Ray is not installed (pip install 'npegg[ray]')")
    folder = _claim(args, where)
    try:
        where.out = folder.path
        try:                                                    # in the claimed folder: no probe in another's way;
            with signals_held():                                # its probe file is never left behind by a Ctrl-C
                check_disk(cfg, folder.path)                    # a checkpoint beside the one it replaces
        except PreflightError as e:
            raise UsageError(str(e)) from e
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
        remove_stale_temps(folder.path)                         # left by a run killed in the middle of a save
        say = lambda text="": print(text, file=stdout, flush=True)  # noqa: E731
        if cfg.method == "es":
            run = ParallelRun(run, corpus.train, workers, args.engine, say=say)
        try:
            return _run_and_report(run, history, cfg, corpus, where, say, stdout)
        except OSError as e:
            if not disk_full(e):
                raise
            raise InputError(disk_full_message(e, folder.path, run.epoch)) from None
        finally:
            if isinstance(run, ParallelRun):
                run.close()                                     # no worker outlives the command
    finally:
        folder.release()


def _run_and_report(run, history, cfg, corpus, where, say, stdout) -> int:
    out = where.out
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
    resumed = "" if where.source is None else (f" (resuming at epoch {run.epoch})" if where.here else
                                               f" (resuming at epoch {run.epoch} from {where.source})")
    say(f"run folder: {out}{resumed}")
    if isinstance(run, ParallelRun):
        where_ = "this process" if run.workers == 1 and run.engine_name == "local" else f"{run.engine_name} engine"
        say(f"workers: {run.workers} ({where_}); members in chunks of {run.chunk}")

    progress = Progress(cfg.epochs, data_bytes_per_epoch(cfg), stream=stdout, every=cfg.eval_every,
                        start_epoch=run.epoch, member_bytes_per_epoch=member_bytes_per_epoch(cfg))
    saver = Saver(run, history, cfg, corpus, base, where.out, where.here)
    try:                      # overflow shows up as Diverged below, not as NumPy's warnings
        if where.here and history.epoch:
            saver.metrics(history)                              # metrics a kill -9 left a save behind, redone
        if isinstance(run, ParallelRun):
            run.say = progress.message                          # a lost worker is reported between progress lines
            run.start()                                         # workers start before the clock does
        with np.errstate(over="ignore", invalid="ignore"):
            history = train(run, history, on_epoch=lambda e, t, v: progress.update(e, t, v), save=saver,
                            on_start=lambda: setattr(progress, "t0", progress.clock()))  # rate and ETA from epoch 1
    except WorkerError as e:
        progress.close()
        if saver.epoch is None:                                 # e.g. the workers never started: nothing to resume
            raise InputError(f"{e}\nthe run stopped at epoch {run.epoch}; no checkpoint was written yet") from e
        raise InputError(f"{e}\nthe run stopped at epoch {run.epoch}; the last checkpoint is {out / CHECKPOINT} "
                         f"(epoch {saver.epoch}); continue with  npegg train --resume {out}") from e
    except KeyboardInterrupt as e:                              # Ctrl-C, SIGTERM, SIGHUP (stopping.py)
        stopping()
        progress.close()
        if not history.epoch:
            say(f"{stopped_by(e)} before the first epoch: nothing was saved")
            return exit_status(e)
        if history.epoch[-1] < run.epoch:                       # stopped between an epoch's step and its row
            history.add(run.epoch, float("nan"), None, history.seconds[-1])
        if saver.epoch != run.epoch:
            saver()
        say(f"{stopped_by(e)}: epoch {run.epoch} saved to {out / CHECKPOINT}; continue with  npegg train --resume {out}")
        return exit_status(e)
    except Diverged as e:
        progress.close()
        if saver.epoch is not None:
            kept = f"the last good checkpoint ({out / CHECKPOINT}, epoch {saver.epoch}) is kept"
        else:
            kept = f"nothing was saved in {out}" + (f" ({where.source} is untouched)" if where.source else "")
        raise InputError(f"{e}; {kept}. Try a smaller --sigma or --lr") from e
    progress.close()
    return _report(run, history, cfg, corpus, base, saver, say)


def _report(run, history, cfg, corpus, base, saver, say) -> int:
    """After the last epoch: the results table, then sample.txt and curve.png (a stop meanwhile leaves
    checkpoint and metrics at the last epoch and skips them; ``--resume`` writes them)."""
    out = saver.out
    try:
        if saver.epoch != run.epoch:
            saver()                                             # e.g. a finished run resumed into a new --out
        valid, secs = history.valid_bpb[-1], history.seconds[-1]
        result = summary(run, history, cfg, corpus, base)["result"]
        say(results_table(base, valid, f"npegg {cfg.mode}/{cfg.cell}, epoch {run.epoch}"))
        sample = b""
        if cfg.sample_bytes:
            sample = sample_bytes(run.logits_fn, b"", cfg.sample_bytes, temperature=0.8, seed=cfg.seed)
            with signals_held():
                write_sample(out / "sample.txt", sample)
        with signals_held():
            png = plot_curve(out / "curve.png", history, base, f"{corpus.name}: {cfg.mode}/{cfg.cell}, D={cfg.hidden_dim}, "
                             f"L={cfg.n_layers}, P={cfg.pop_size}")
    except KeyboardInterrupt as e:
        stopping()
        say(f"{stopped_by(e)}: epoch {run.epoch} is saved with its metrics in {out}; sample.txt and curve.png were "
            f"not written (npegg train --resume {out} writes them)")
        return exit_status(e)
    say(f"{format_duration(secs)} of training: {format_rate(result['data_bytes_per_second'])} of the data stream, "
        f"{format_rate(result['member_bytes_per_second'])} member-bytes "
        f"(through {'the model' if cfg.method == 'backprop' else 'every member'})")
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
