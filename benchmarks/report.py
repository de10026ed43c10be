"""One benchmark row (a ratio, its target, its inputs), the printed table, and the JSON file."""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field

TARGET_OPS = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t}


@dataclass
class Row:
    """One figure: ``ratio`` = A ÷ B measured side by side, or a skipped row with its reason.

    key: a stable id ("forward/linear/D256/r1/B1"); group: the table section; a, b: what was
    timed, in words; target: None (report only) or (op, value) with op "<=" or ">=";
    inputs: shapes, P, rank, dtype, repeats…; timing: ``Comparison.as_dict()`` or other raw
    measurements; note: why the setting was chosen or what limits the figure.
    """

    key: str
    group: str
    a: str
    b: str
    ratio: float | None = None
    target: tuple | None = None
    inputs: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    note: str = ""
    skipped: str | None = None

    def __post_init__(self):
        if "repeats" in self.timing:          # the repeats actually made (a budget may lower them)
            self.inputs = {**self.inputs, "repeats": self.timing["repeats"]}

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when there is no target or no figure."""
        return self._verdict(self.ratio)

    @property
    def other_clock(self) -> tuple:
        """(name, ratio) of the clock that did not give the figure, if the row was timed."""
        clock = self.timing.get("clock")
        if clock is None:
            return None, None
        other = "wall" if clock == "cpu" else "cpu"
        return other, self.timing.get(f"{other}_ratio")

    @property
    def other_met(self) -> bool | None:
        """The verdict the other clock's ratio gives."""
        return self._verdict(self.other_clock[1])

    def _verdict(self, ratio) -> bool | None:
        if self.target is None or ratio is None or not math.isfinite(ratio):
            return None
        op, value = self.target
        return bool(TARGET_OPS[op](ratio, value))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["target"] = None if self.target is None else {"op": self.target[0], "value": self.target[1]}
        d["met"] = self.met
        d["other_clock_met"] = self.other_met
        return d


def skipped(key: str, group: str, a: str, b: str, reason: str, target=None) -> Row:
    """A row that could not be measured (a module missing, a flag), kept in the table."""
    return Row(key, group, a, b, target=target, skipped=reason)


def _fmt_target(row: Row) -> str:
    return "report" if row.target is None else f"{row.target[0]} {row.target[1]:g}"


def _fmt_inputs(inputs: dict) -> str:
    short = {k: v for k, v in inputs.items() if k not in ("repeats", "dtype", "calls_per_sample")}
    return " ".join(f"{k}={v}" for k, v in short.items())


def format_table(rows: list, clock: str = "cpu") -> str:
    """A plain-text table: one line per row, grouped, with ratio, target and verdict.

    ``ratio`` is the figure, on ``clock`` (``timing``); the next column is the same ratio on the
    other clock, shown so that a busy machine is visible (a verdict marked * is reversed there);
    A ms and B ms are the medians per call on ``clock``.
    """
    other = "wall" if clock == "cpu" else "cpu"
    head = f"{'figure':<44} {'ratio':>8} {'target':>8} {'met':>4} {other:>7}  {'A ms':>9} {'B ms':>9}  inputs"
    lines = [head, "-" * len(head)]
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            lines.append(f"[{group}]")
        name = r.key.split("/", 1)[-1]
        if r.skipped:
            lines.append(f"  {name:<42} {'—':>8} {_fmt_target(r):>8} {'':>4} {'':>7}  skipped: {r.skipped}")
            continue
        verdict = {True: "yes", False: "NO", None: ""}[r.met]
        if r.other_met is not None and r.other_met != r.met:
            verdict += "*"
        alt = r.other_clock[1]
        alt = f"{alt:7.3f}" if alt is not None else f"{'':>7}"
        ta, tb = (r.timing.get(k) for k in ("median_a_s", "median_b_s"))
        ta = f"{ta * 1e3:9.2f}" if ta is not None else f"{'':>9}"
        tb = f"{tb * 1e3:9.2f}" if tb is not None else f"{'':>9}"
        lines.append(f"  {name:<42} {r.ratio:8.3f} {_fmt_target(r):>8} {verdict:>4} {alt}  {ta} {tb}  "
                     f"{_fmt_inputs(r.inputs)}")
    return "\n".join(lines)


def environment() -> dict:
    """What the figures depend on: machine, NumPy, BLAS threads, load when the run started."""
    import numpy as np
    env = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           "cpus": os.cpu_count(), "loadavg_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            env[var] = os.environ[var]
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        env["blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:                     # show_config(mode=…) is NumPy ≥ 1.25; the field is optional
        pass
    return env


def write_json(path, rows: list, settings: dict, notes: list, env: dict) -> None:
    """The whole run as JSON: environment, settings, notes on the chosen inputs, every row."""
    doc = {"environment": env, "settings": settings, "notes": notes, "rows": [r.as_dict() for r in rows]}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, allow_nan=False, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(v):
    import numpy as np
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")
