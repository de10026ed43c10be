"""What ``npegg sample``, ``npegg eval`` and ``npegg export-vectors`` do, and what every command shares.

A command takes the parsed arguments and a text stream and returns the exit status; it raises
``UsageError`` (exit 2: a flag's value, an existing ``--out`` folder, ``--resume`` with other
settings) or ``InputError`` (exit 1: bad data or an unusable checkpoint), which ``cli.main``
turns into one line on stderr. ``npegg train`` is in ``train_command``.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .blas import set_blas_threads
from .checkpoint import CheckpointError, load_checkpoint
from .config import MAX_SAMPLE_BYTES, ConfigError, TrainConfig
from .data import Corpus, DataError, load_corpus
from .evaluate import plan_lanes, sample_bytes
from .fingerprint import tree_differences
from .runs import make_run

CHECKPOINT = "checkpoint.npz"


class UsageError(Exception):
    """Exit 2 with this message."""


class InputError(Exception):
    """Exit 1 with this message (bad data or checkpoint)."""


def explicit_flags(args) -> dict:
    """The TrainConfig fields the user set on the command line."""
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def checkpoint_path(where) -> Path:
    """A run folder's ``checkpoint.npz``, or ``where`` itself when it names a file (``~`` expanded, as in --data)."""
    p = Path(where).expanduser()
    return p / CHECKPOINT if p.is_dir() else p


def read_checkpoint(where):
    """``load_checkpoint`` of a run folder or file; a failure becomes ``InputError`` (exit 1)."""
    try:
        return load_checkpoint(checkpoint_path(where))
    except CheckpointError as e:
        raise InputError(str(e)) from e


def read_corpus(cfg: TrainConfig):
    """The run's corpus (``data.load_corpus``); unreadable data becomes ``InputError`` naming --data."""
    try:
        return load_corpus(cfg.data, max_docs=cfg.max_docs, valid_fraction=cfg.valid_fraction)
    except DataError as e:
        raise InputError(f"--data: {e}") from e


def corpus_digest(corpus: Corpus) -> str:
    """sha256 of the training and validation bytes: a resumed run must read the same data."""
    h = hashlib.sha256()
    h.update(corpus.train.tobytes())
    h.update(b"|")
    h.update(corpus.valid.tobytes())
    return h.hexdigest()


# -- sample, eval, export-vectors ---------------------------------------------------------------
def saved_config(ckpt, where) -> TrainConfig:
    """The checkpoint's training config, type-checked and validated; InputError naming the file otherwise."""
    path = checkpoint_path(where)
    if "train" not in ckpt.config:
        raise InputError(f"{path}: not a checkpoint of `npegg train` (no training config)")
    try:
        cfg = TrainConfig.from_dict(ckpt.config["train"])
        cfg.validate()
    except ConfigError as e:
        raise InputError(f"{path}: damaged checkpoint config ({e})") from e
    return cfg.resolved()


def restore_run(run, ckpt, where) -> None:
    """``run.restore`` after checking every saved tree against the run's own (paths, dtypes, shapes) and
    the fingerprint against its model; InputError naming the file and the first difference otherwise."""
    path = checkpoint_path(where)
    try:
        load_checkpoint(path, expect=run.fingerprint())
    except CheckpointError as e:
        raise InputError(str(e)) from e
    trees, scalars = run.checkpoint_trees()
    diffs = tree_differences({k: ckpt.trees.get(k) for k in trees}, trees)
    diffs += [f"scalar {k} is missing" for k in scalars if k not in ckpt.scalars]
    diffs += [f"scalar {k} = {ckpt.scalars[k]!r} is not a finite {type(v).__name__}" for k, v in scalars.items()
              if k in ckpt.scalars and not (isinstance(ckpt.scalars[k], type(v)) and np.isfinite(ckpt.scalars[k]))]
    if diffs:
        raise InputError(f"{path}: damaged checkpoint, it does not fit this run: " + "; ".join(diffs[:4]))
    run.restore(ckpt.trees, ckpt.scalars)
    if hasattr(run, "reader"):
        try:
            run.reader.next(run.data_state)                     # the saved reader position fits the data
        except DataError as e:
            raise InputError(f"{path}: damaged checkpoint, {e}") from e


def _restored(where):
    """(run with the checkpoint's params, its config, the checkpoint) for sampling and evaluation."""
    if not where.strip():                         # "" is no path: it would read ./checkpoint.npz
        raise UsageError(f"the checkpoint argument must name a run folder or its checkpoint.npz; got {where!r}")
    ckpt = read_checkpoint(where)
    cfg = saved_config(ckpt, where)
    run = make_run(cfg, None)
    restore_run(run, ckpt, where)
    return run, cfg, ckpt


def cmd_sample(args, stdout) -> int:
    """``npegg sample``: the prompt and ``--length`` bytes sampled at ``--temperature`` from a checkpoint."""
    if not (np.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0; got {args.temperature}")
    if not 0 <= args.length <= MAX_SAMPLE_BYTES:   # one model step per byte: 10⁶ is minutes, 10¹² never ends
        raise UsageError(f"--length must be between 0 and {MAX_SAMPLE_BYTES:,} bytes; got {args.length}")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be an integer in [0, 2**32); got {args.seed}")
    try:                    # the bytes typed (surrogateescape gives back bytes that were not UTF-8)
        prompt = args.prompt.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise UsageError(f"--prompt: character {e.object[e.start]!r} at position {e.start} is a lone surrogate, "
                         f"not text; give UTF-8 text") from e
    run, _, _ = _restored(args.checkpoint)        # sampling reads no data: nothing to compare with the training data
    out = sample_bytes(run.logits_fn, prompt, args.length, args.temperature, args.seed)
    print((prompt + out).replace(b"\0", b"\n\n").decode("utf-8", errors="replace"), file=stdout)
    return 0


def cmd_eval(args, stdout) -> int:
    """``npegg eval``: bpb = −(1/N) Σ log₂ p(xₜ | x₍<t₎) of a checkpoint on its validation split or other data."""
    if args.max_docs is not None and args.max_docs < 1:
        raise UsageError(f"--max-docs must be an integer >= 1; got {args.max_docs}")
    run, cfg, ckpt = _restored(args.checkpoint)
    data = args.data if args.data is not None else cfg.data
    max_docs = args.max_docs if args.max_docs is not None else (None if args.data else cfg.max_docs)
    split = args.split or ("valid" if args.data is None else "all")
    try:
        corpus = load_corpus(data, max_docs=max_docs, valid_fraction=cfg.valid_fraction)
    except DataError as e:
        raise InputError(f"--data: {e}") from e
    trained = ckpt.config.get("corpus", {})
    if args.data is None and args.max_docs is None and trained.get("sha256") not in (None, corpus_digest(corpus)):
        print(f"npegg eval: warning: the data at {data or 'the default stdlib corpus'} is not the data the checkpoint "
              f"was trained on ({trained.get('description')}): it has changed since, so these are not the run's "
              f"validation numbers", file=sys.stderr, flush=True)
    if split == "valid":
        lanes = plan_lanes(corpus.valid, cfg.eval_lanes, cfg.eval_warmup, context=int(corpus.train[-1]))
    else:
        lanes = plan_lanes(np.concatenate([corpus.train, corpus.valid]), cfg.eval_lanes, cfg.eval_warmup)
    bpb = run.bpb(lanes)
    print(f"{corpus.name} ({split}): {lanes.describe()}", file=stdout)
    print(f"bpb {bpb:.4f}  (epoch {run.epoch}, {cfg.mode}/{cfg.cell})", file=stdout)
    return 0


#: flag → (smallest, largest) of the integer options of ``export-vectors``
EXPORT_RANGES = {"pop": (4, 4096), "width": (1, 1024), "layers": (1, 16), "seq_len": (1, 4096), "rank": (1, 64),
                 "steps": (1, 100)}
EXPORT_KINDS = ("int8", "float", "lm")


def export_settings(args) -> dict:
    """The export-vectors flags, checked: {kinds, and every flag given}; UsageError naming the flag otherwise."""
    from ..optim import OPTIMIZERS
    flag = lambda name: "--" + name.replace("_", "-")
    got = {}
    for name, (lo, hi) in EXPORT_RANGES.items():
        v = getattr(args, name)
        if v is not None:
            if not lo <= v <= hi:
                raise UsageError(f"{flag(name)} must be an integer in [{lo}, {hi}]; got {v}")
            got[name] = v
    if "pop" in got and got["pop"] % 4:
        raise UsageError(f"--pop must be a multiple of 4 (antithetic pairs, fitness groups of 4); got {got['pop']}")
    for name in ("lr", "sigma"):
        v = getattr(args, name)
        if v is not None:
            if not (np.isfinite(v) and 0 < v <= 100):
                raise UsageError(f"{flag(name)} must be a number in (0, 100]; got {v}")
            got[name] = v
    if args.optimizer is not None:
        if args.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {args.optimizer!r}")
        got["optimizer"] = args.optimizer
    if args.mlp is not None:
        try:
            dims = tuple(int(d) for d in args.mlp.split(","))
        except ValueError:
            dims = ()
        if len(dims) < 2 or not all(1 <= d <= 4096 for d in dims):
            raise UsageError(f"--mlp must be widths IN,H…,OUT (at least two integers in [1, 4096]); got {args.mlp!r}")
        got["mlp"] = dims
    kinds = tuple(args.kinds.split(",")) if args.kinds is not None else EXPORT_KINDS
    if not kinds or any(k not in EXPORT_KINDS for k in kinds):
        raise UsageError(f"--kinds must be a comma-separated list of {', '.join(EXPORT_KINDS)}; got {args.kinds!r}")
    return {"kinds": kinds, **got}


def cmd_export_vectors(args, stdout) -> int:
    """Oracle export (npegg.oracle.int8_vectors, float_vectors, lm_vectors) into a new or empty folder.

    On one BLAS thread whatever the environment says, so that the float files are the same bits
    on every run on this machine (docs/determinism.md). Every file is written atomically
    (``atomic_write``): a full disk or an interrupt leaves no partial file behind."""
    from ..oracle.int8_vectors import export_int8_vectors
    from ..oracle.float_vectors import export_float_vectors
    from ..oracle.lm_vectors import export_lm_vectors
    s = export_settings(args)
    if not args.dir.strip():                      # "" is no path: it would write into the current folder
        raise UsageError(f"the dir argument must name a folder; got {args.dir!r}")
    out = Path(args.dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; choose a new one")
    try:                                        # a folder that cannot be written is found before any work
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise InputError(f"{out}: cannot create or write this folder ({e.strerror or e})") from e
    set_blas_threads(1)
    pick = lambda *names: {n: s[n] for n in names if n in s}
    written = []

    def write(path, fill):                      # atomic, and remembered so that a failure can undo the set
        written.append(atomic_write(path, fill))
        return path
    try:
        if "int8" in s["kinds"]:
            export_int8_vectors(out, write=write, **pick("width", "layers", "seq_len", "rank", "pop"))
        if "float" in s["kinds"]:
            mlp = {"dims": s["mlp"]} if "mlp" in s else {}
            export_float_vectors(out / "float_eggroll_npegg.npz", write=write, **mlp,
                                 **pick("pop", "sigma", "lr", "optimizer", "rank", "steps"))
        if "lm" in s["kinds"]:
            lm = {{"width": "hidden_dim", "layers": "n_layers", "seq_len": "T"}.get(k, k): v
                  for k, v in pick("width", "layers", "seq_len", "pop", "rank", "sigma", "lr", "optimizer", "steps").items()}
            export_lm_vectors(out, write=write, **lm)
    except OSError as e:                        # a full disk: no partial file (atomic), and no partial set
        for path in written:
            path.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write the vectors ({e.strerror or e}); nothing was left in {out}, "
                         f"free some space and run the same command again") from e
    for path in written:
        print(path, file=stdout)
    return 0
