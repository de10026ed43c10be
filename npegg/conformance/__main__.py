"""``python -m npegg.conformance``: run an adapter through the kit, or replay one saved case.

Exit status: 0 when every claimed operation passed (or failed as the --xfail file expects),
1 when one failed, 2 for a usage error (named argument, nothing run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .protocol import DIFFERS, KNOWN, LEVELS, NOT_CLAIMED, OPERATIONS, load_adapter

DEFAULT_EXAMPLES = 50        # a release run; CI passes a smaller --max-examples (docs/conformance.md)


def read_xfail(path) -> set:
    """Operation names, one per line (``#`` starts a comment); unknown names are a usage error."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--xfail {path!r}: no such file")
    names = {line.split("#")[0].strip() for line in p.read_text().splitlines()} - {""}
    unknown = sorted(names - set(OPERATIONS))
    if unknown:
        raise ValueError(f"--xfail {path!r}: unknown operations {unknown}; known: {sorted(OPERATIONS)}")
    return names


def check_writable(report, failures) -> None:
    """ValueError naming ``--report`` or ``--failures`` when the run could not write there at its end:
    the report's folder must exist, and the failures folder's nearest existing ancestor be a folder."""
    if report is not None:
        r = Path(report)
        if r.is_dir() or not r.parent.is_dir() or not os.access(r.parent, os.W_OK):
            raise ValueError(f"--report {report!r}: cannot write a file there (its folder must exist and be writable)")
    f = Path(failures).absolute()
    existing = next(p for p in (f, *f.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--failures {failures!r}: {existing} is a file, not a folder; choose another --failures")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m npegg.conformance", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", help="MODULE:ADAPTER or path/to/file.py:ADAPTER")
    ap.add_argument("--replay", metavar="FILE.npz", help="run one saved case again and print its verdict")
    ap.add_argument("--xfail", metavar="FILE", help="operations expected to fail, one per line")
    ap.add_argument("--report", metavar="FILE.json", help="write the results as JSON")
    ap.add_argument("--failures", metavar="DIR", default="conformance-failures",
                    help="where minimal failing cases are saved (default: %(default)s)")
    ap.add_argument("--max-examples", type=int, default=DEFAULT_EXAMPLES, help="cases per operation (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed (default: %(default)s; same seed, same cases)")
    ap.add_argument("--level", action="append", type=int, choices=sorted(LEVELS), help="only these levels (repeatable)")
    ap.add_argument("--ops", help="only these operations, comma-separated")
    ap.add_argument("--list", action="store_true", help="print the operations and exit")
    return ap.parse_args(argv)


def _print_ops():
    for name, op in OPERATIONS.items():
        print(f"[{op.level}] {name}: {op.formula}{'   (exact)' if op.exact else ''}")
        print(f"      in:  {', '.join(f'{k} {v}' for k, v in op.inputs.items())}")
        print(f"      out: {', '.join(f'{k} {v}' for k, v in op.outputs.items())}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        _print_ops()
        return 0
    try:
        if not args.backend:
            raise ValueError("--backend is required (MODULE:ADAPTER), e.g. --backend npegg.conformance.npegg_adapter:ADAPTER")
        if args.max_examples < 1:
            raise ValueError(f"--max-examples must be >= 1, got {args.max_examples}")
        ops = None
        if args.ops is not None:
            ops = {o.strip() for o in args.ops.split(",") if o.strip()}
            if not ops:                                  # "" is no list, not "every operation"
                raise ValueError(f"--ops: no operation named in {args.ops!r}; known: {sorted(OPERATIONS)}")
            unknown = sorted(ops - set(OPERATIONS))
            if unknown:
                raise ValueError(f"--ops: unknown operations {unknown}; known: {sorted(OPERATIONS)}")
        xfail = read_xfail(args.xfail) if args.xfail else set()
        if args.replay and not Path(args.replay).is_file():
            raise ValueError(f"--replay {args.replay!r}: no such file")
        check_writable(args.report, args.failures)     # before the run, not a traceback after it
        adapter = load_adapter(args.backend)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from . import runner
    if args.replay:
        try:
            op, out = runner.replay(adapter, args.replay)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{adapter.name} {op}: {out.status}" + (f" — {out.message}" if out.message else ""))
        return 1 if out.status == DIFFERS else 0
    results = runner.check_adapter(adapter, ops=ops, levels=args.level, max_examples=args.max_examples,
                                   seed=args.seed, failures=Path(args.failures), backend=args.backend, xfail=xfail)
    print(f"{adapter.name} ({getattr(adapter, 'about', '')}): {args.max_examples} cases per operation, seed {args.seed}")
    for r in results:
        line = f"  [{r.level}] {r.op:24s} {r.status:18s}"
        if r.status != NOT_CLAIMED:
            line += f" {r.cases:4d} cases: {r.exact} exact, {r.within} within tolerance, {r.failing} failing"
            if r.worst_ratio:
                line += f"; worst error/tolerance {r.worst_ratio:.3g}"
        print(line)
        if r.failing:
            print(f"      {r.message}")
            if r.replay:
                print(f"      minimal case: {r.extra.get('minimal', '')[:400]}")
                print(f"      replay: {r.replay}")
        if r.expected_failure and not r.failing and r.status != NOT_CLAIMED:
            print(f"      expected to fail (--xfail) but passed: remove {r.op} from {args.xfail}")
    if args.report:
        Path(args.report).write_text(json.dumps(runner.as_json(results, adapter, args.backend, args.max_examples,
                                                               args.seed), indent=1))
    return 1 if any(r.status == DIFFERS for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
