"""``python -m benchmarks``: run every row, print the table, write the JSON.

    python -m benchmarks                      # the full run (about 4 minutes on 2 cores)
    python benchmarks/run.py                  # the same
    python -m benchmarks --quick              # a smoke run of a few seconds, small sizes
    python -m benchmarks --skip-train         # without the peak-memory row (it runs `npegg train`)
    python -m benchmarks --only forward,lm    # some groups only
    python -m benchmarks --threads 2          # BLAS threads (default: what `npegg train` uses)

Every figure is a ratio A ÷ B of two things timed interleaved in the same run (``timing``);
the JSON (``benchmarks/results.json`` unless ``--json PATH``) holds each row's inputs, every
repeat's time, the environment and the notes on how the inputs were chosen.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

GROUPS = ("roofline", "forward", "update", "openes", "lm", "scan", "int8", "workers", "train")
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats: a smoke run of a few seconds")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default: %(default)s)")
    p.add_argument("--only", default="", help=f"comma-separated groups to run, of {','.join(GROUPS)}")
    p.add_argument("--skip-train", action="store_true", help="skip the peak-memory row (it runs `npegg train`)")
    p.add_argument("--train-epochs", type=int, default=None,
                   help="epochs of the peak-memory `npegg train` run (default 2; 0 = npegg's own default)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: as `npegg train`, i.e. npegg.program.blas.default_blas_threads())")
    args = p.parse_args(argv)
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        p.error(f"unknown group(s) {unknown}; choose from {','.join(GROUPS)}")
    if args.skip_train and "train" in groups:
        groups.remove("train")
    args.groups = groups
    return args


def set_threads(n):
    """Use ``n`` BLAS threads; by default what ``npegg train`` uses (``npegg.program.blas``: one thread
    unless NPEGG_BLAS_THREADS, OPENBLAS_NUM_THREADS or OMP_NUM_THREADS says otherwise).
    Returns the count in force, or None if it could not be set (another BLAS, no npegg.program.blas)."""
    if n is None:
        env = [os.environ.get(v, "").strip() for v in ("NPEGG_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
        n = next((int(v) for v in env if v.isdigit() and int(v) > 0), 1)
    try:
        from npegg.program.blas import set_blas_threads
    except ImportError:
        return None
    return int(n) if set_blas_threads(int(n)) else None


def main(argv=None) -> int:
    args = parse_args(argv)
    blas_threads = set_threads(args.threads)
    from . import report, rows_float, rows_int8, rows_lm, rows_parallel, rows_roofline, settings, timing
    timing.CLOCK = "cpu" if blas_threads == 1 else "wall"   # CPU time is wall time only on one thread

    s = settings.QUICK if args.quick else settings.FULL
    if args.train_epochs is not None:
        rest = [a for i, a in enumerate(s.train_args)
                if a != "--epochs" and (i == 0 or s.train_args[i - 1] != "--epochs")]
        s = replace(s, train_args=tuple(rest) + (("--epochs", str(args.train_epochs)) if args.train_epochs else ()))
    sources = {"roofline": rows_roofline.rows, "forward": rows_float.forward_rows, "update": rows_float.update_rows,
               "openes": rows_float.openes_rows, "lm": rows_lm.lm_rows, "scan": rows_lm.scan_rows,
               "int8": rows_int8.rows, "workers": rows_parallel.rows, "train": rows_lm.train_rows}
    env = report.environment()
    env["blas_threads"] = blas_threads
    env["clock"] = timing.CLOCK
    print(f"npegg benchmarks ({'quick' if args.quick else 'full'}): numpy {env['numpy']}, "
          f"{env.get('blas', 'BLAS ?')} on {blas_threads} thread(s), {env['cpus']} cpus, load {env['loadavg_1m_at_start']}", flush=True)
    rows, t0 = [], time.perf_counter()
    for g in args.groups:
        tg = time.perf_counter()
        for row in sources[g](s):
            rows.append(row)
            status = f"skipped ({row.skipped})" if row.skipped else f"{row.ratio:.3f}"
            print(f"  {row.key:<44} {status}", flush=True)
        print(f"  [{g}: {time.perf_counter() - tg:.1f} s]", flush=True)
    elapsed = time.perf_counter() - t0
    print()
    print(report.format_table(rows, timing.CLOCK))
    print(f"\nratio: median(A) / median(B) of {'process CPU' if timing.CLOCK == 'cpu' else 'wall-clock'} "
          f"times, A and B interleaved ({'BLAS on one thread, so CPU time = idle-machine wall time' if timing.CLOCK == 'cpu' else 'BLAS on several threads'})")
    if args.quick:
        print("\n(--quick: tiny sizes to check that every row runs; the targets are for the full sizes)")
    if any(r.other_met is not None and r.other_met != r.met for r in rows):
        print("* the other clock's ratio gives the other verdict: the machine was busy")
    notes = [settings.__doc__.split("\n\n", 1)[1].strip()]
    print("\n" + notes[0])
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; targets met: "
          f"{sum(r.met is True for r in rows)}, not met: {sum(r.met is False for r in rows)}, "
          f"skipped: {sum(bool(r.skipped) for r in rows)}")
    env["elapsed_s"] = elapsed
    env["loadavg_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report.write_json(args.json, rows, {"quick": args.quick, "groups": args.groups, **s.as_dict()}, notes, env)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if not __package__:                  # `python benchmarks/run.py`: run it as the package's module
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchmarks.run import main
    sys.exit(main())
