"""Run an adapter through the kit: generate cases, compare with npegg, shrink and save failures.

``check_op(adapter, op)`` runs hypothesis on ``cases.strategy(op)``: each case goes to npegg
(``npegg_adapter.ADAPTER``, the oracle) and to the adapter, and ``compare`` classifies the
outputs as exact (``np.array_equal``), within tolerance (every element within
``tolerance.tolerance``; float operations only) or failing. The first failure is shrunk by
hypothesis to a minimal case, which is saved as ``<failures>/<adapter>-<op>.npz`` (the case's
arrays plus ``__op__``) and replayed by ``replay(adapter, path)``, the command printed beside it.
"""
from __future__ import annotations

import re
import time
import traceback
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .protocol import DIFFERS, EXACT, KNOWN, NOT_CLAIMED, OPERATIONS, WITHIN


@dataclass
class Outcome:
    """One case's verdict: status EXACT / WITHIN / DIFFERS, the worst error ÷ tolerance, a message."""
    status: str
    ratio: float = 0.0
    message: str = ""


@dataclass
class OpResult:
    """What one operation gave over all its cases (the row of a report)."""
    op: str
    level: int
    status: str = NOT_CLAIMED
    cases: int = 0
    exact: int = 0
    within: int = 0
    failing: int = 0
    worst_ratio: float = 0.0
    message: str = ""
    minimal_case: str = ""
    replay: str = ""
    seconds: float = 0.0
    expected_failure: bool = False
    extra: dict = field(default_factory=dict)


def compare(op: str, case: dict, want: dict, got) -> Outcome:
    """Classify ``got`` (the adapter's outputs) against ``want`` (npegg's) for one case."""
    spec = OPERATIONS[op]
    if not isinstance(got, dict):
        return Outcome(DIFFERS, np.inf, f"run() returned {type(got).__name__}, not a dict of outputs")
    missing = sorted(set(want) - set(got))
    if missing:
        return Outcome(DIFFERS, np.inf, f"outputs missing: {missing}")
    if all(np.shape(got[k]) == np.shape(want[k]) and np.array_equal(np.asarray(got[k]), want[k]) for k in want):
        return Outcome(EXACT)
    for k in want:
        if np.shape(got[k]) != np.shape(want[k]):
            return Outcome(DIFFERS, np.inf, f"{k}: shape {np.shape(got[k])}, npegg's is {np.shape(want[k])}")
    if spec.exact:
        k = next(k for k in want if not np.array_equal(np.asarray(got[k]), want[k]))
        bad = np.argwhere(np.asarray(got[k]) != want[k])
        i = tuple(bad[0])
        return Outcome(DIFFERS, np.inf, f"{k}: {len(bad)} of {np.size(want[k])} entries differ (exact operation); "
                                        f"first at {i}: got {np.asarray(got[k])[i]}, npegg {want[k][i]}")
    from .tolerance import tolerance
    tol = tolerance(op, case, want)
    worst, message = 0.0, ""
    for k in want:
        g, w = np.asarray(got[k], np.float64), np.asarray(want[k], np.float64)
        if not np.isfinite(g).all() and not np.array_equal(np.isfinite(g), np.isfinite(w)):
            return Outcome(DIFFERS, np.inf, f"{k}: non-finite values where npegg's are finite")
        err = np.abs(g - w)
        t = np.broadcast_to(np.asarray(tol[k], np.float64), err.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(err == 0, 0.0, np.where(t > 0, err / t, np.inf))
        i = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
        if ratio.size and ratio[i] > worst:
            worst = float(ratio[i])
            message = (f"{k}{list(i)}: got {g[i]!r}, npegg {w[i]!r}, |error| {err[i]:.3g} = {worst:.3g} × the "
                       f"tolerance {t[i]:.3g}")
    return Outcome(WITHIN if worst <= 1 else DIFFERS, worst, message)


def save_case(path: Path, op: str, case: dict, backend: str = "") -> Path:
    """Write a case as ``.npz`` (no pickle): its arrays and scalars, plus ``__op__`` and ``__backend__``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in case.items()}
    np.savez(path, __op__=np.str_(op), __backend__=np.str_(backend), **arrays)
    return path


def load_case(path) -> tuple[str, dict]:
    """(op, case) of a saved case; 0-d arrays come back as Python scalars."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    op = str(data.pop("__op__"))
    data.pop("__backend__", None)
    case = {k: (v.item() if v.ndim == 0 else v) for k, v in data.items()}
    return op, case


def run_case(adapter, op: str, case: dict) -> tuple[dict, Outcome]:
    """npegg's outputs and the adapter's verdict on one case (an exception in the adapter is a failure)."""
    from ..fitness import AntitheticSplitWarning
    from .npegg_adapter import ADAPTER
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AntitheticSplitWarning)   # odd populations are generated on purpose
        want = ADAPTER.run(op, case)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AntitheticSplitWarning)
            got = adapter.run(op, {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()})
    except Exception as e:  # the adapter's bug is the finding, reported with its message
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return want, Outcome(DIFFERS, np.inf, f"the adapter raised {tb}")
    return want, compare(op, case, want, got)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def check_op(adapter, op: str, *, max_examples: int = 50, seed: int = 0, failures: Path | None = None,
             backend: str = "", expected_failure: bool = False) -> OpResult:
    """Run ``max_examples`` hypothesis cases of ``op`` through ``adapter``; shrink and save a failure."""
    spec = OPERATIONS[op]
    res = OpResult(op, spec.level, expected_failure=expected_failure)
    if op not in set(adapter.claims):
        return res
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from .cases import strategy

    state = {"failed": False, "minimal": None, "outcome": None}
    start = time.perf_counter()

    @hypothesis.seed(seed)
    @settings(max_examples=max_examples, database=None, deadline=None, derandomize=False, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy(op))
    def body(case):
        _, out = run_case(adapter, op, case)
        if not state["failed"]:
            res.cases += 1
            res.exact += out.status == EXACT
            res.within += out.status == WITHIN
            if out.status != DIFFERS:
                res.worst_ratio = max(res.worst_ratio, out.ratio)
        if out.status == DIFFERS:
            state["failed"] = True
            state["minimal"], state["outcome"] = case, out       # the last failing call is hypothesis's minimal one
            raise AssertionError(out.message)

    try:
        body()
    except AssertionError:
        pass
    except Exception as e:  # hypothesis's own errors (unsatisfiable strategy, …) are reported, not hidden
        res.status, res.message = DIFFERS, f"the run stopped: {type(e).__name__}: {e}"
        res.failing = 1
        return res
    res.seconds = time.perf_counter() - start
    if state["failed"]:
        res.failing = 1
        res.status = KNOWN if expected_failure else DIFFERS
        res.message = state["outcome"].message
        if failures is not None:
            path = save_case(Path(failures) / f"{_slug(adapter.name)}-{op}.npz", op, state["minimal"], backend)
            res.minimal_case = str(path)
            res.replay = f"python -m npegg.conformance --backend {backend or 'MODULE:ADAPTER'} --replay {path}"
        res.extra["minimal"] = describe(state["minimal"])
    else:
        res.status = EXACT if res.exact == res.cases else WITHIN
    return res


def describe(case: dict) -> str:
    """A short, readable summary of a case: scalars as they are, arrays by shape (values if tiny)."""
    parts = []
    for k, v in case.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k}={np.array2string(v, precision=6, separator=',')}" if v.size <= 4 else f"{k}{list(v.shape)}")
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def check_adapter(adapter, *, ops=None, levels=None, max_examples: int = 50, seed: int = 0, failures=None,
                  backend: str = "", xfail=()) -> list[OpResult]:
    """``check_op`` for every operation (or those in ``ops`` / ``levels``), in OPERATIONS order."""
    results = []
    for op, spec in OPERATIONS.items():
        if (ops and op not in ops) or (levels and spec.level not in levels):
            continue
        results.append(check_op(adapter, op, max_examples=max_examples, seed=seed, failures=failures,
                                backend=backend, expected_failure=op in xfail))
    return results


def replay(adapter, path) -> tuple[str, Outcome]:
    """Run one saved case again: (op, outcome)."""
    try:
        op, case = load_case(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:   # a text file, a checkpoint, a damaged save
        why = ("it has no __op__ entry" if isinstance(e, KeyError) else     # (numpy's own words for a file that
               getattr(e, "strerror", None) or "not a readable .npz file")  # is no .npz invite unpickling it)
        raise ValueError(f"--replay {path}: not a case saved by the kit (an .npz of the case's arrays and "
                         f"__op__): {why}") from None
    if op not in OPERATIONS:
        raise ValueError(f"--replay {path}: unknown operation {op!r} in the file")
    if op not in set(adapter.claims):
        raise ValueError(f"--replay {path}: the adapter {adapter.name!r} does not claim {op!r}")
    _, out = run_case(adapter, op, case)
    return op, out


def as_json(results, adapter, backend: str, max_examples: int, seed: int) -> dict:
    """The ``--report`` document: the adapter, the budget and one entry per operation."""
    return {"adapter": adapter.name, "about": getattr(adapter, "about", ""), "backend": backend,
            "max_examples": max_examples, "seed": seed,
            "operations": {r.op: {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                  for k, v in asdict(r).items() if k != "op"} for r in results}}
