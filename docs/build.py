"""Build npegg's site: the book (every chapter executed), the guide and the API reference.

    python docs/build.py [--out build/site] [--small] [--jobs N] [--only 03 ...]

Sphinx does the work (configuration: docs/conf.py): myst-nb reads each chapter
(``tutorials/NN_*.py``, percent format) and each solutions file through jupytext and executes it
in a fresh Jupyter kernel, autosummary writes the API pages from the docstrings, and
sphinx-book-theme lays it out, with the maths typeset by a MathJax copied into the site.
``--small`` runs every chapter in its small setting (seconds; what the tests build) and says so
at the top of every page; without it the chapters run in their full setting, whose numbers the
text quotes, and every ``book.check`` claim is checked.

Sphinx runs with ``-W --keep-going``: every page is built, and then any warning fails the build
(exit status 1) — a cell that raises (a drifted claim among them), output on stderr, an output
showing a traceback, a broken cross-reference, a docstring that does not parse. Written to
``OUT``: ``html/`` (the site; open ``html/index.html``), ``build.json`` (per executed page: ran to
its end, setting, figures, claims), ``records/``, ``figures/``, ``jupyter/`` (the kernel: this
interpreter) and ``doctrees/`` (Sphinx's cache).
``--only 03`` executes only the pages whose file name contains ``03`` (the others are shown
without outputs): quicker while writing one chapter.

The tools are the ``docs`` extra: ``pip install -e ".[docs]"``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
TOOLS = ("sphinx", "myst_nb", "jupytext", "sphinx_book_theme", "ipykernel", "matplotlib", "sphinx-mathjax-offline")


def executed_pages() -> list[str]:
    """Every page that runs: the chapters and the solutions files, as repository paths."""
    tut = ROOT / "tutorials"
    return [p.relative_to(ROOT).as_posix() for p in sorted(tut.glob("[0-9][0-9]_*.py"))
            + sorted((tut / "solutions").glob("[0-9][0-9]_*.py"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build npegg's site (the book executed, the guide, the API).")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="folder to write to (default build/site)")
    ap.add_argument("--small", action="store_true", help="run the chapters in their small setting (what the tests do)")
    ap.add_argument("--jobs", type=int, default=1, help="pages read (and executed) at once (default 1)")
    ap.add_argument("--only", nargs="+", metavar="TEXT",
                    help="execute only the pages whose file name contains one of these (e.g. --only 03)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / "build.json").is_file():
        ap.error(f"--out {args.out} exists and is not an earlier build (no build.json): refusing to overwrite it")
    missing = [m for m in TOOLS if importlib.util.find_spec(m) is None]
    if missing:
        print(f"docs/build.py needs {', '.join(missing)}: pip install -e \".[docs]\"", file=sys.stderr)
        return 2
    pages = executed_pages()
    skip = [p for p in pages if args.only and not any(o in Path(p).name for o in args.only)]
    if args.only and len(skip) == len(pages):
        ap.error(f"--only {' '.join(args.only)}: no chapter or solutions file matches")

    if out.exists():
        shutil.rmtree(out)
    # autosummary writes the API pages into the source tree; a module that has gone must not leave
    # its page behind (one build at a time per checkout, then).
    shutil.rmtree(DOCS / "api" / "generated", ignore_errors=True)
    records = out / "records"
    records.mkdir(parents=True)
    # The kernel every page runs in: this interpreter (not whatever "python3" Jupyter finds first),
    # logging only errors (its TCP notice would otherwise print once per page).
    spec = out / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"],
        "display_name": "Python 3 (npegg site)", "language": "python"}))
    os.environ.update({
        "NPEGG_TUTORIAL_SMALL": "1" if args.small else "0", "MPLBACKEND": "Agg",
        "NPEGG_TUTORIAL_OUT": str(out / "figures"), "NPEGG_BOOK_RECORDS": str(records),
        "NPEGG_SITE_SKIP": os.pathsep.join(skip), "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PATH": os.pathsep.join([str(out / "jupyter")] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tutorials")]
                                      + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])})
    from sphinx.cmd.build import build_main

    t0 = time.perf_counter()
    status = build_main(["-b", "html", "-c", str(DOCS), "-d", str(out / "doctrees"), "-W", "--keep-going",
                         "-j", str(args.jobs), "-q", str(ROOT), str(out / "html")])
    seconds = time.perf_counter() - t0
    ran = {}
    for f in records.glob("*.json"):
        rec = json.loads(f.read_text(encoding="utf-8"))
        ran[rec.pop("page")] = rec
    manifest = {"small": args.small, "ok": status == 0, "seconds": seconds, "only": args.only,
                "pages": {p: {"skipped": p in skip, "ran": p in ran, **ran.get(p, {})} for p in pages}}
    (out / "build.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    not_run = [p for p in pages if p not in skip and p not in ran]
    for p in not_run:
        print(f"BUILD FAILED: {p} did not run to its end", file=sys.stderr)
    print(f"[site] {'small' if args.small else 'full'} build in {seconds:.0f} s -> {out / 'html' / 'index.html'}"
          + ("" if status == 0 and not not_run else " (FAILED)"))
    return 0 if status == 0 and not not_run else 1


if __name__ == "__main__":
    sys.exit(main())
