"""Plumbing shared by the chapters: the small/full setting, figures, checked claims.

Not part of the story; the chapters import it so that each of them stays about ES.

- The small setting (seconds; what the test suite and ``docs/build.py --small`` run) or the full
  one is chosen in each chapter's first code cell, ``SMALL = book.choose_setting(None)``: None
  takes ``NPEGG_TUTORIAL_SMALL`` (1 = small), and a reader in a notebook writes True or False.
- ``NPEGG_TUTORIAL_OUT`` is the folder the figures are written to (default ``tutorials/figures``).
- matplotlib is optional: without it ``pyplot()`` returns None and the chapters skip their plots.
- ``check(name, value, expected, tol)`` is how prose and code stay together: every number the
  prose quotes is computed by the chapter and checked here, and a drift stops the chapter.
- ``NPEGG_BOOK_RECORDS`` is set by the site build (``docs/build.py``): the plumbing lines below
  (``[setting]``, ``[claim]``, ``[figure]``, ``[done]``) are then not printed, so they never show
  on a page, and ``write_record`` leaves what the run did in that folder for the tests.
- BLAS runs on one thread, as ``npegg train`` does (``npegg/program/blas.py`` explains why: on
  the 2-core machine the book was measured on, small multithreaded matmuls were up to 20x
  slower); set ``NPEGG_BLAS_THREADS=2`` to change it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path


def _env_small() -> bool:
    return os.environ.get("NPEGG_TUTORIAL_SMALL", "").strip() not in ("", "0")


SMALL = _env_small()
OUT = Path(os.environ.get("NPEGG_TUTORIAL_OUT") or Path(__file__).resolve().parent / "figures")
RECORDS = os.environ.get("NPEGG_BOOK_RECORDS", "")   # set by the site build: stay quiet, keep records
try:
    from npegg.program.blas import default_blas_threads
    default_blas_threads()
except ImportError:  # npegg not installed: chapter 1 needs only NumPy
    pass

_T0 = time.perf_counter()
_saved: list[str] = []
_plotting = False
CLAIMS: dict[str, dict] = {}   # name -> {"value", "expected", "tol", "checked"}: what check() saw


def choose_setting(small: bool | None = None) -> bool:
    """Select the small (True) or full (False) setting; None reads NPEGG_TUTORIAL_SMALL. Returns it."""
    if small is not None and not isinstance(small, bool):
        raise TypeError(f"choose_setting(small=...) takes True, False or None, not {small!r}")
    global SMALL
    SMALL = _env_small() if small is None else small
    _say(f"[setting] {'small' if SMALL else 'full'}")
    return SMALL


def _say(line: str) -> None:
    """Print a plumbing line when run as a script or notebook; the site build shows none."""
    if not RECORDS:
        print(line)


def setting(small, full):
    """``small`` in the small setting, else ``full``."""
    return small if SMALL else full


def check(name: str, value: float, expected: float, tol: float, *, full_only: bool = False) -> float:
    """Check a number the prose quotes: raise ClaimDrift unless |value − expected| ≤ tol.

    ``expected`` is the number as written in the text and ``tol`` how far the computation may
    honestly move from it (its rounding, or its Monte-Carlo error: say which beside the call).
    ``full_only=True`` marks a number that only the full setting reproduces; the small setting
    records it unchecked (the full build, ``docs/build.py`` without ``--small``, checks it).
    Returns ``value`` so the call can sit inside an expression.
    """
    value_f, expected_f, tol_f = float(value), float(expected), float(tol)
    if not tol_f >= 0:
        raise ValueError(f"check({name!r}): tol must be >= 0, got {tol!r}")
    checked = not (full_only and SMALL)
    CLAIMS[name] = {"value": value_f, "expected": expected_f, "tol": tol_f, "checked": checked}
    if checked and not (math.isfinite(value_f) and abs(value_f - expected_f) <= tol_f):
        raise ClaimDrift(f"claim {name!r}: computed {value_f:.6g}, the text says {expected_f:.6g} ± {tol_f:.3g}")
    state = "ok" if checked else "not checked in the small setting"
    _say(f"[claim] {name}: {value_f:.6g} (text: {expected_f:.6g} ± {tol_f:.3g}) {state}")
    return value


class ClaimDrift(AssertionError):
    """A number the text quotes no longer matches what the code computes."""


def pyplot():
    """matplotlib.pyplot, or None (with a note) when matplotlib is not installed."""
    try:
        import matplotlib
        if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # a plain `python` run only writes files, never opens windows
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: the figures are skipped (pip install matplotlib)")
        return None
    global _plotting
    _plotting = True
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(fig, name: str) -> None:
    """Write ``fig`` to OUT/name, show that file when running in a notebook, then close it."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, bbox_inches="tight")
    _saved.append(name)
    _say(f"[figure] {path}")
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(path), metadata={"npegg_figure": name}))  # the saved file itself
    import matplotlib.pyplot as plt
    plt.close(fig)


def record() -> dict:
    """What this run did: setting, figures written, claims checked, seconds since import."""
    return {"small": SMALL, "plotting": _plotting, "figures": list(_saved), "claims": dict(CLAIMS),
            "seconds": time.perf_counter() - _T0}


def finish(figures: list[str]) -> None:
    """Check every declared figure was written (when plotting) and print the run time."""
    missing = [f for f in figures if f not in _saved]
    if _plotting and missing:
        raise RuntimeError(f"declared figures not written: {missing}")
    mode = "small" if SMALL else "full"
    _say(f"[done] {mode} setting, {time.perf_counter() - _T0:.1f} s wall time")


def write_record(page: str) -> None:
    """Leave ``record()`` in NPEGG_BOOK_RECORDS for ``page`` (its path in the repository): the site
    build adds this call as a hidden last cell, so a record means the page ran to its end."""
    if not RECORDS:
        raise RuntimeError("write_record is for the site build: NPEGG_BOOK_RECORDS is not set")
    import json
    dest = Path(RECORDS) / (page.replace("/", "__") + ".json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"page": page, **record()}), encoding="utf-8")
