"""The ``npegg`` command: ``train`` a byte-level language model by ES, ``sample`` from it, ``eval`` it.

    npegg train                       # the shipped corpus (CPython 3.11.7's standard library), no download
    npegg train --mode float --epochs 50 --hidden-dim 32 --n-layers 1 --pop-size 512 \\
                --max-docs 1000 --lr 0.02 --sigma 0.03 --data minipile_valid_1000.npy
    npegg sample runs/<run> --prompt "def " --temperature 0.8
    npegg eval runs/<run> --data some.txt

Every flag is checked, and the data read, before any training starts. Exit status: 0 done;
2 a bad command line (a flag's value, an existing ``--out`` folder or one another run is using,
``--resume`` with settings that differ from the checkpoint's); 1 bad data or an unusable
checkpoint; 130, 143, 129 stopped by Ctrl-C, SIGTERM, SIGHUP (the last finished epoch is saved
and ``--resume`` continues it). A reader of the output who goes away (``| head``) stops the
printing, not the command.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from .blas import default_blas_threads
from .commands import InputError, UsageError, cmd_eval, cmd_export_vectors, cmd_sample
from .config import EMBEDDING_UPDATES, SCHEDULES, TrainConfig
from .progress import QuietStream
from .stopping import exit_status, stop_signals, stopped_by
from .train_command import cmd_train


# -- the command line -----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line (not the whole usage) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    ap = _Parser(prog="npegg", allow_abbrev=False,      # --hidden is not --hidden-dim
                                 description="EGGROLL evolution strategies in plain NumPy: "
                                 "train a byte-level language model on a CPU.")
    ap.add_argument("--version", action="version", version=f"npegg {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="{train,sample,eval,export-vectors}")
    sub.required = True

    t = sub.add_parser("train", allow_abbrev=False, help="train a byte-level language model by evolution strategies",
                       description="Train a byte-level LM by ES. Unset flags take the defaults shown "
                                   "(or, with --resume, the checkpoint's settings).")
    g = t.add_argument_group("model")
    g.add_argument("--mode", choices=("float", "int"), help=f"float (EggRoll) or int (int8 EGG + Q-EGGROLL) [{d.mode}]")
    g.add_argument("--method", choices=("es", "backprop"),
                   help=f"float mode: es, or backprop (the same model by backprop through time) [{d.method}]")
    g.add_argument("--cell", choices=("egg", "mingru"), help=f"recurrent cell [{d.cell}; egg in int mode]")
    g.add_argument("--hidden-dim", type=int, metavar="D", help=f"width [{d.hidden_dim}]")
    g.add_argument("--n-layers", type=int, metavar="L", help=f"layers [{d.n_layers}]")
    g.add_argument("--mlp-ratio", type=int, metavar="M",
                   help=f"float mode: each layer's MLP is D → M·D → D, 0 = none [{d.mlp_ratio}]")
    g.add_argument("--direct-path", action=argparse.BooleanOptionalAction, default=None,
                   help=f"float mode: a learned table from each byte straight to the next byte's logits "
                        f"[{'on' if d.direct_path else 'off'}]")
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
    g.add_argument("--embedding-update", choices=EMBEDDING_UPDATES,
                   help=f"float mode: seen = each member's update term covers only the embedding rows its bytes "
                        f"read (the same expectation, less noise); all = every row, as the reference "
                        f"[{d.embedding_update}]")
    g.add_argument("--sigma-shift", type=int, help=f"int mode: noise shifted right by 4 + this [{d.sigma_shift}]")
    g.add_argument("--alpha", type=float, help=f"int mode: Q-EGGROLL significance schedule [{d.alpha}]")
    g.add_argument("--seed", type=int, help=f"[{d.seed}]")
    g = t.add_argument_group("data and output")
    g.add_argument("--data", metavar="PATH", help="text file, folder of text files, or .npy byte stream "
                                                  "[the shipped corpus: CPython 3.11.7's standard-library .py files]")
    g.add_argument("--max-docs", type=int, metavar="N", help="keep the first N documents [all]")
    g.add_argument("--out", metavar="DIR", help="run folder [runs/<corpus>-<mode>-<cell>-<time>]")
    g.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty --out: its checkpoint.npz, metrics.csv, metrics.json, "
                        "sample.txt and curve.png go at the first save and this run writes its own; other files stay")
    g.add_argument("--resume", metavar="RUN", help="continue a run folder (or its checkpoint.npz)")
    g.add_argument("--eval-every", type=int, metavar="N", help="validate every N epochs [epochs/5]")
    g.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N epochs [as --eval-every]")
    g.add_argument("--sample-bytes", type=int, metavar="N", help=f"bytes of sample text at the end [{d.sample_bytes}]")
    g = t.add_argument_group("workers (the results are the same bits for any number)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes or Ray actors [the cores this process may use]")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: Ray actors on the cluster at RAY_ADDRESS, "
                        "or on a local Ray [local]")

    s = sub.add_parser("sample", allow_abbrev=False, help="generate text from a checkpoint")
    s.add_argument("checkpoint", help="run folder or checkpoint.npz")
    s.add_argument("--prompt", default="", help="text to continue ['' = a document start]")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = always the likeliest byte [0.8]")
    s.add_argument("--length", type=int, default=400, help="bytes to generate [400]")
    s.add_argument("--seed", type=int, default=0, help="[0]; an integer in [0, 2**32)")

    e = sub.add_parser("eval", allow_abbrev=False, help="bits per byte of a checkpoint on some data")
    e.add_argument("checkpoint", help="run folder or checkpoint.npz")
    e.add_argument("--data", metavar="PATH", help="[the checkpoint's training data]")
    e.add_argument("--max-docs", type=int, metavar="N")
    e.add_argument("--split", choices=("valid", "all"),
                   help="score the validation split or every byte [valid for the training data, all otherwise]")

    x = sub.add_parser("export-vectors", allow_abbrev=False, help="write golden vectors of npegg's own int8 and float computations")
    x.add_argument("dir", help="folder to write them into (created; existing files are not overwritten)")
    x.add_argument("--kinds", metavar="K,…", help="which files: int8, float (the MLP), lm (the byte LM) [all three]")
    x.add_argument("--pop", type=int, metavar="P", help="population, a multiple of 4 [each file's own: 8 to 32]")
    x.add_argument("--lr", type=float, help="learning rate of the float files [each case's own]")
    x.add_argument("--optimizer", metavar="NAME", help="optimizer of the float files: sgd, adam, adamw [each case's own]")
    x.add_argument("--width", type=int, metavar="D", help="width of the int8 EGG and the byte LM [each file's own]")
    x.add_argument("--layers", type=int, metavar="L", help="layers of the int8 EGG and the byte LM [each file's own]")
    x.add_argument("--seq-len", type=int, metavar="T", help="bytes per sequence, int8 EGG and byte LM [each file's own]")
    x.add_argument("--mlp", metavar="IN,H…,OUT", help="widths of the float MLP [3,8,8,2]")
    x.add_argument("--rank", type=int, metavar="R", help="rank of the low-rank noise [each file's own]")
    x.add_argument("--sigma", type=float, help="σ of the float files [0.1 MLP, 0.05 LM]")
    x.add_argument("--steps", type=int, help="ES steps recorded per float case [each case's own]")
    return ap


def _standard_fds() -> None:
    """Give a closed stdin, stdout or stderr (``>&-``) the null device, so that no file npegg opens
    later (a checkpoint, the run folder's lock) becomes descriptor 1 or 2 and receives its output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv=None, stdout=None) -> int:
    """Run ``npegg`` with ``argv`` (default sys.argv[1:]); returns the exit status."""
    _standard_fds()
    stdout = QuietStream(sys.stdout if stdout is None else stdout)
    stderr = QuietStream(sys.stderr)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        default_blas_threads()
    except ValueError as e:                             # NPEGG_BLAS_THREADS set to something else than a count
        print(f"npegg {args.command}: error: {e}", file=sys.stderr)
        return 2
    command = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval,
               "export-vectors": cmd_export_vectors}[args.command]
    with stop_signals():
        try:
            return command(args, stdout)
        except UsageError as e:
            print(f"npegg {args.command}: error: {e}", file=stderr, flush=True)
            return 2
        except InputError as e:
            print(f"npegg {args.command}: error: {e}", file=stderr, flush=True)
            return 1
        except KeyboardInterrupt as e:                  # before training began, or in eval, sample, export
            note = " before the first epoch; nothing was saved" if args.command == "train" else ""
            print(f"npegg {args.command}: {stopped_by(e)}{note}", file=stderr, flush=True)
            return exit_status(e)
