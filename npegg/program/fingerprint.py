"""What identifies a model, and where two sets of checkpoint trees differ (names, dtypes, shapes).

A checkpoint stores its model's fingerprint; resuming, sampling or evaluating compares it with
the running model's (``fingerprint_mismatch``) and every saved tree with the run's own
(``tree_differences``), so a checkpoint of another model, or one edited by hand into another
shape, is refused with the first differences named instead of failing somewhere in the maths.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..tree import flatten


def model_fingerprint(kind: str, params: dict, **sizes) -> dict:
    """What identifies a model: {"kind", "sizes", "leaves": {path: [dtype, shape]}}, JSON-ready.

    ``sizes`` are the hyper-parameters that fix the shapes (hidden_dim=32, n_layers=1, …).
    """
    leaves = {p: [np.asarray(v).dtype.str, list(np.shape(v))] for p, v in flatten(params).items()}
    return json.loads(json.dumps({"kind": kind, "sizes": sizes, "leaves": leaves}))


def fingerprint_mismatch(saved: dict, expected: dict, names=("checkpoint", "this model"),
                         limit: int = 8) -> list[str]:
    """Readable differences between two fingerprints ('hidden_dim: checkpoint 32 vs this model 64'); [] if equal."""
    a_name, b_name = names
    diffs = []
    if saved.get("kind") != expected.get("kind"):
        diffs.append(f"model kind: {a_name} {saved.get('kind')!r} vs {b_name} {expected.get('kind')!r}")
    s_sizes, e_sizes = saved.get("sizes", {}), expected.get("sizes", {})
    for k in sorted(set(s_sizes) | set(e_sizes)):
        if s_sizes.get(k) != e_sizes.get(k):
            diffs.append(f"{k}: {a_name} {s_sizes.get(k, 'absent')} vs {b_name} {e_sizes.get(k, 'absent')}")
    s_leaves, e_leaves = saved.get("leaves", {}), expected.get("leaves", {})
    show = lambda x: "absent" if x is None else f"{np.dtype(x[0]).name} {tuple(x[1])}"  # noqa: E731
    for p in sorted(set(s_leaves) | set(e_leaves)):
        if s_leaves.get(p) != e_leaves.get(p):
            diffs.append(f"params/{p}: {a_name} {show(s_leaves.get(p))} vs {b_name} {show(e_leaves.get(p))}")
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"… and {len(diffs) - limit} more differences"]
    return diffs


def tree_differences(saved: Any, expected: Any, prefix: str = "") -> list[str]:
    """Where ``saved`` differs from ``expected`` in structure, dtype or shape ('hidden: float32 (4, 1, 8)
    saved, float32 (8, 1, 8) expected'); [] when every leaf matches. Values are not compared."""
    if isinstance(expected, dict):
        if not isinstance(saved, dict):
            return [f"{prefix or 'tree'}: {'missing' if saved is None else 'an array'} where a tree is expected"]
        diffs = [f"{prefix}{k}: missing" for k in expected if k not in saved]
        diffs += [f"{prefix}{k}: not expected" for k in saved if k not in expected]
        for k in expected:
            if k in saved:
                diffs += tree_differences(saved[k], expected[k], f"{prefix}{k}/")
        return diffs
    name = prefix.rstrip("/") or "leaf"
    if saved is None or isinstance(saved, dict):
        return [f"{name}: {'missing' if saved is None else 'a tree'} where an array is expected"]
    s, e = np.asarray(saved), np.asarray(expected)
    if s.dtype != e.dtype or s.shape != e.shape:
        return [f"{name}: {s.dtype} {s.shape} saved, {e.dtype} {e.shape} expected"]
    return []
