"""The ``npegg`` command: ``train`` a byte-level language model by ES, ``sample`` from it, ``eval`` it.

    npegg train                       # the default corpus (Python's standard library), no download
    npegg train --mode float --epochs 50 --hidden-dim 32 --n-layers 1 --pop-size 512 \\
                --max-docs 1000 --lr 0.02 --sigma 0.03 --data minipile_valid_1000.npy
    npegg sample runs/<run> --prompt "def " --temperature 0.8
    npegg eval runs/<run> --data some.txt

Every flag is checked, and the data read, before any training starts. Exit status: 0 done;
2 a bad command line (a flag's value, an existing ``--out`` folder, ``--resume`` with settings
that differ from the checkpoint's); 1 bad data or an unusable checkpoint; 130 interrupted (the
last finished epoch is saved and ``--resume`` continues it).
"""
from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from .. import __version__
from .baselines import baselines as measure_baselines
from .blas import default_blas_threads, set_blas_threads
from .checkpoint import CheckpointError, RunDirError, load_checkpoint, prepare_run_dir, save_checkpoint
from .data import DataError, load_corpus
from .evaluate import plan_lanes, sample_bytes
from .progress import Progress, format_duration, format_rate, format_table
from .report import plot_curve, results_table, write_metrics
from .train import SCHEDULES, ConfigError, History, TrainConfig, corpus_digest, make_run, train

CHECKPOINT = "checkpoint.npz"
#: flags that may differ when resuming: they change how long the run goes and what it reports, not its maths
RESUMABLE = ("epochs", "eval_every", "save_every", "sample_bytes")
INT_ONLY, FLOAT_ONLY = ("sigma_shift", "alpha"), ("lr", "sigma", "optimizer", "lr_schedule", "sigma_schedule",
                                                   "head_scale")


class UsageError(Exception):
    """Exit 2 with this message."""


class InputError(Exception):
    """Exit 1 with this message (bad data or checkpoint)."""


# -- the command line -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="npegg", description="EGGROLL evolution strategies in plain NumPy: "
                                 "train a byte-level language model on a CPU.")
    ap.add_argument("--version", action="version", version=f"npegg {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="{train,sample,eval}")
    sub.required = True

    t = sub.add_parser("train", help="train a byte-level language model by evolution strategies",
                       description="Train a byte-level LM by ES. Unset flags take the defaults shown "
                                   "(or, with --resume, the checkpoint's settings).")
    g = t.add_argument_group("model")
    g.add_argument("--mode", choices=("float", "int"), help=f"float (EggRoll) or int (int8 EGG + Q-EGGROLL) [{d.mode}]")
    g.add_argument("--method", choices=("es", "backprop"),
                   help=f"float mode: es, or backprop (the same model by backprop through time) [{d.method}]")
    g.add_argument("--cell", choices=("egg", "mingru"), help=f"recurrent cell [{d.cell}; egg in int mode]")
    g.add_argument("--hidden-dim", type=int, metavar="D", help=f"width [{d.hidden_dim}]")
    g.add_argument("--n-layers", type=int, metavar="L", help=f"layers [{d.n_layers}]")
    g = t.add_argument_group("evolution strategies")
    g.add_argument("--epochs", type=int, help=f"updates [{d.epochs}]")
    g.add_argument("--pop-size", type=int, metavar="P", help=f"population, even [{d.pop_size}]")
    g.add_argument("--group-size", type=int, metavar="G", help=f"members sharing the same bytes, even, divides P [{d.group_size}]")
    g.add_argument("--tokens-per-update", type=int, metavar="T", help=f"bytes each member reads per epoch [{d.tokens_per_update}]")
    g.add_argument("--rank", type=int, metavar="R", help=f"rank of the perturbations [{d.rank}]")
    g.add_argument("--sigma", type=float, help=f"noise scale (float mode) [{d.sigma}]")
    g.add_argument("--lr", type=float, help=f"learning rate (float mode) [{d.lr}]")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help=f"[{d.optimizer}]")
    g.add_argument("--lr-schedule", choices=SCHEDULES, help=f"decay to 0 over the run [{d.lr_schedule}]")
    g.add_argument("--sigma-schedule", choices=SCHEDULES, help=f"decay to 0 over the run [{d.sigma_schedule}]")
    g.add_argument("--sigma-shift", type=int, help=f"int mode: noise shifted right by 4 + this [{d.sigma_shift}]")
    g.add_argument("--alpha", type=float, help=f"int mode: Q-EGGROLL significance schedule [{d.alpha}]")
    g.add_argument("--seed", type=int, help=f"[{d.seed}]")
    g = t.add_argument_group("data and output")
    g.add_argument("--data", metavar="PATH", help="text file, folder of text files, or .npy byte stream "
                                                  "[the Python standard library's source]")
    g.add_argument("--max-docs", type=int, metavar="N", help="keep the first N documents [all]")
    g.add_argument("--out", metavar="DIR", help="run folder [runs/<corpus>-<mode>-<cell>-<time>]")
    g.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    g.add_argument("--resume", metavar="RUN", help="continue a run folder (or its checkpoint.npz)")
    g.add_argument("--eval-every", type=int, metavar="N", help="validate every N epochs [epochs/5]")
    g.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N epochs [as --eval-every]")
    g.add_argument("--sample-bytes", type=int, metavar="N", help=f"bytes of sample text at the end [{d.sample_bytes}]")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("checkpoint", help="run folder or checkpoint.npz")
    s.add_argument("--prompt", default="", help="text to continue ['' = a document start]")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = always the likeliest byte [0.8]")
    s.add_argument("--length", type=int, default=400, help="bytes to generate [400]")
    s.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("eval", help="bits per byte of a checkpoint on some data")
    e.add_argument("checkpoint", help="run folder or checkpoint.npz")
    e.add_argument("--data", metavar="PATH", help="[the checkpoint's training data]")
    e.add_argument("--max-docs", type=int, metavar="N")
    e.add_argument("--split", choices=("valid", "all"),
                   help="score the validation split or every byte [valid for the training data, all otherwise]")

    x = sub.add_parser("export-vectors", help="write golden vectors of npegg's own int8 and float computations")
    x.add_argument("dir", help="folder to write them into (created; existing files are not overwritten)")
    return ap


def _explicit(args) -> dict:
    """The TrainConfig fields the user set on the command line."""
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _checkpoint_path(where) -> Path:
    p = Path(where)
    return p / CHECKPOINT if p.is_dir() else p


def _load(where):
    try:
        return load_checkpoint(_checkpoint_path(where))
    except CheckpointError as e:
        raise InputError(str(e)) from e


def _corpus(cfg: TrainConfig):
    try:
        return load_corpus(cfg.data, max_docs=cfg.max_docs, valid_fraction=cfg.valid_fraction)
    except DataError as e:
        raise InputError(f"--data: {e}") from e


# -- train ----------------------------------------------------------------------------------------
def _train_config(args):
    """(config, checkpoint or None, run folder) from the flags, checked before anything is read."""
    given = _explicit(args)
    ckpt = None
    if args.resume:
        ckpt = _load(args.resume)
        if "train" not in ckpt.config:
            raise InputError(f"--resume: {_checkpoint_path(args.resume)} was not written by `npegg train` "
                             f"(it has no training config), so there is no run to continue")
        saved = TrainConfig.from_dict(ckpt.config["train"])
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
        out = _checkpoint_path(args.resume).parent
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(cfg.data).stem if cfg.data else "stdlib"
        out = Path("runs") / f"{name}-{cfg.mode}-{cfg.cell}-{stamp}"
        n = 1
        while out.exists():
            out, n = Path("runs") / f"{name}-{cfg.mode}-{cfg.cell}-{stamp}-{n}", n + 1
    resuming_here = args.resume and out.resolve() == _checkpoint_path(args.resume).parent.resolve()
    if out.exists() and not resuming_here and not args.overwrite:
        try:
            prepare_run_dir(out, overwrite=False)               # raises with the standard message
        except RunDirError as e:
            raise UsageError(f"--out: {e}") from e
    return cfg, ckpt, out


def _save(run, history, cfg, corpus, out: Path) -> None:
    trees, scalars = run.checkpoint_trees()
    trees = {**trees, "history": history.tree()}
    save_checkpoint(out / CHECKPOINT, trees, scalars=scalars, fingerprint=run.fingerprint(),
                    config={"train": asdict(cfg), "corpus": {"name": corpus.name, "sha256": corpus_digest(corpus),
                                                             "description": corpus.description},
                            "npegg": __version__})


def cmd_train(args, stdout) -> int:
    cfg, ckpt, out = _train_config(args)
    corpus = _corpus(cfg)
    if ckpt is not None and ckpt.config.get("corpus", {}).get("sha256") != corpus_digest(corpus):
        raise InputError(f"--resume: the data ({cfg.data or 'the default stdlib corpus'}, --max-docs {cfg.max_docs}) "
                         f"is not the data the checkpoint was trained on ({ckpt.config.get('corpus', {}).get('description')})")
    try:
        run = make_run(cfg, corpus)
    except DataError as e:
        raise InputError(f"--data: {e}") from e
    history = History.empty()
    if ckpt is not None:
        expected = run.fingerprint()
        try:
            load_checkpoint(_checkpoint_path(args.resume), expect=expected)
        except CheckpointError as e:
            raise InputError(str(e)) from e
        run.restore(ckpt.trees, ckpt.scalars)
        history = History.from_tree(ckpt.trees["history"])
    out = prepare_run_dir(out, overwrite=True)
    say = lambda text="": print(text, file=stdout, flush=True)  # noqa: E731

    n_params = sum(int(np.size(v)) for v in _leaves(run.checkpoint_trees()[0]["params"]))
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

    progress = Progress(cfg.epochs, cfg.pop_size * cfg.tokens_per_update, stream=stdout,
                        every=cfg.eval_every, start_epoch=run.epoch)
    save = lambda: _save(run, history, cfg, corpus, out)  # noqa: E731
    try:
        history = train(run, history, on_epoch=lambda e, t, v: progress.update(e, t, v), save=save,
                        on_start=lambda: setattr(progress, "t0", progress.clock()))  # rate and ETA from epoch 1
    except KeyboardInterrupt:
        progress.close()
        save()
        say(f"interrupted: epoch {run.epoch} saved to {out / CHECKPOINT}; continue with  npegg train --resume {out}")
        return 130
    progress.close()

    valid = history.valid_bpb[-1]
    done = history.epoch[-1] - (history.epoch[0] if history.epoch else 0)
    secs = history.seconds[-1]
    rate = cfg.pop_size * cfg.tokens_per_update * max(done, 1) / max(secs, 1e-9)
    say(results_table(base, valid, f"npegg {cfg.mode}/{cfg.cell}, epoch {run.epoch}"))
    sample = b""
    if cfg.sample_bytes:
        sample = sample_bytes(run.logits_fn, b"", cfg.sample_bytes, temperature=0.8, seed=cfg.seed)
        (out / "sample.txt").write_bytes(sample.replace(b"\0", b"\n\n"))
    summary = {"npegg": __version__, "config": asdict(cfg), "corpus": {"name": corpus.name, "description": corpus.description},
               "validation": run.lanes.describe(), "baselines": base,
               "result": {"epoch": run.epoch, "valid_bpb": valid, "train_bpb": history.train_bpb[-1],
                          "seconds": secs, "population_bytes_per_second": rate}}
    write_metrics(out, history, summary)
    png = plot_curve(out / "curve.png", history, base, f"{corpus.name}: {cfg.mode}/{cfg.cell}, D={cfg.hidden_dim}, "
                     f"L={cfg.n_layers}, P={cfg.pop_size}")
    say(f"{format_duration(secs)} of training, {format_rate(rate)} through the population")
    say(f"wrote {out / CHECKPOINT}, metrics.csv, metrics.json" + (", sample.txt" if sample else "")
        + (", curve.png" if png else ""))
    if png is None:
        say("learning curve: skipped, matplotlib is not installed (pip install 'npegg[plot]')")
    if sample:
        text = sample.replace(b"\0", b"\n\n").decode("utf-8", errors="replace")
        say(f"sample (temperature 0.8):\n{text[:600]}")
    return 0


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


# -- sample and eval ------------------------------------------------------------------------------
def _restored(where):
    """(run with the checkpoint's params, its config) for sampling and evaluation."""
    ckpt = _load(where)
    if "train" not in ckpt.config:
        raise InputError(f"{_checkpoint_path(where)}: not a checkpoint of `npegg train` (no training config)")
    cfg = TrainConfig.from_dict(ckpt.config["train"])
    run = make_run(cfg, None)
    try:
        load_checkpoint(_checkpoint_path(where), expect=run.fingerprint())
        run.restore(ckpt.trees, ckpt.scalars)
    except (CheckpointError, KeyError, ValueError) as e:
        raise InputError(f"{_checkpoint_path(where)}: {e}") from e
    return run, cfg


def cmd_sample(args, stdout) -> int:
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0; got {args.temperature}")
    if args.length < 0:
        raise UsageError(f"--length must be >= 0; got {args.length}")
    run, _ = _restored(args.checkpoint)
    prompt = args.prompt.encode("utf-8")
    out = sample_bytes(run.logits_fn, prompt, args.length, args.temperature, args.seed)
    print((prompt + out).replace(b"\0", b"\n\n").decode("utf-8", errors="replace"), file=stdout)
    return 0


def cmd_eval(args, stdout) -> int:
    run, cfg = _restored(args.checkpoint)
    data = args.data if args.data is not None else cfg.data
    max_docs = args.max_docs if args.max_docs is not None else (None if args.data else cfg.max_docs)
    split = args.split or ("valid" if args.data is None else "all")
    try:
        corpus = load_corpus(data, max_docs=max_docs, valid_fraction=cfg.valid_fraction)
    except DataError as e:
        raise InputError(f"--data: {e}") from e
    if split == "valid":
        lanes = plan_lanes(corpus.valid, cfg.eval_lanes, cfg.eval_warmup, context=int(corpus.train[-1]))
    else:
        lanes = plan_lanes(np.concatenate([corpus.train, corpus.valid]), cfg.eval_lanes, cfg.eval_warmup)
    bpb = run.bpb(lanes)
    print(f"{corpus.name} ({split}): {lanes.describe()}", file=stdout)
    print(f"bpb {bpb:.4f}  (epoch {run.epoch}, {cfg.mode}/{cfg.cell})", file=stdout)
    return 0


def cmd_export_vectors(args, stdout) -> int:
    """Oracle export (npegg.oracle.int8_vectors, float_vectors, lm_vectors) into a new or empty folder.

    On one BLAS thread whatever the environment says, so that the float files are the same bits
    on every run on this machine (docs/determinism.md)."""
    from ..oracle.int8_vectors import export_int8_vectors
    from ..oracle.float_vectors import export_float_vectors
    from ..oracle.lm_vectors import export_lm_vectors
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; choose a new one")
    set_blas_threads(1)
    paths = (export_int8_vectors(out) + [export_float_vectors(out / "float_eggroll_npegg.npz")]
             + export_lm_vectors(out))
    for path in paths:
        print(path, file=stdout)
    return 0


def main(argv=None, stdout=None) -> int:
    """Run ``npegg`` with ``argv`` (default sys.argv[1:]); returns the exit status."""
    stdout = sys.stdout if stdout is None else stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    default_blas_threads()
    command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval,
               "export-vectors": cmd_export_vectors}[args.command]
    try:
        return command(args, stdout)
    except UsageError as e:
        print(f"npegg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"npegg {args.command}: error: {e}", file=sys.stderr)
        return 1
