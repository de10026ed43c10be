"""Checkpoints: named trees of arrays, a config and scalars in one ``.npz``, written atomically.

Layout of the file (a zip of ``.npy`` members, as ``np.savez`` writes; nothing is pickled, and it
is read back with ``np.load(path, allow_pickle=False)``)::

    <tree>/<path>            one array per leaf, e.g. params/blocks/att/Wf, opt_state/mu/…, data/pos
    <tree>                   a tree that is a single array rather than a dict
    __scalars__/<name>       0-d arrays: epoch, …
    __npegg__/format         "npegg-checkpoint"          0-d str arrays (np.array(str), not pickle)
    __npegg__/version        1                           0-d int64
    __npegg__/config         json.dumps(config)
    __npegg__/fingerprint    json.dumps(model_fingerprint(…))
    __npegg__/layout         json.dumps({"trees": [names], "empty": [paths of empty dicts]})

Leaves come back as arrays (a Python scalar leaf comes back as a 0-d array); scalars come back as
Python numbers. Empty dicts survive the round trip through ``layout``.

Writing goes to a temporary file in the destination folder, is fsynced, then ``os.replace``d over
the destination, so a crash mid-write leaves the previous checkpoint intact. Loading checks, in
order: the file is a readable zip of arrays (zip CRCs catch flipped bytes, a missing central
directory catches truncation), it carries the npegg format tag, its stored fingerprint agrees with
its own params, and, when ``expect`` is given, that fingerprint equals the running model's. Every
failure raises ``CheckpointError`` naming the file and what differs.
"""
from __future__ import annotations

import json
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tree import flatten

FORMAT = "npegg-checkpoint"
VERSION = 1
_META, _SCALARS = "__npegg__", "__scalars__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not npegg's, or of another model."""


class RunDirError(FileExistsError):
    """A run folder that would be overwritten without ``overwrite=True``."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: {tree name: nested dict of arrays}, config, scalars, fingerprint."""
    trees: dict[str, Any]
    config: dict = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)


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


def _entries(trees: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Flatten named trees to {key: array} and list the paths of empty dicts."""
    out, empty = {}, []

    def walk(node, prefix):
        if isinstance(node, dict):
            if not node:
                empty.append(prefix)
            for k, v in node.items():
                if not isinstance(k, str) or not k or "/" in k:
                    raise ValueError(f"checkpoint keys must be non-empty strings without '/': {prefix}/{k!r}")
                walk(v, f"{prefix}/{k}")
        else:
            arr = np.asarray(node)
            if arr.dtype.hasobject:
                raise ValueError(f"{prefix}: cannot store a {type(node).__name__} without pickle")
            out[prefix] = arr

    for name, tree in trees.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith("__"):
            raise ValueError(f"tree names must be non-empty, without '/', not starting with '__': {name!r}")
        walk(tree, name)
    return out, empty


def _write_array(fileobj, arr: np.ndarray) -> None:
    """One ``.npy`` member (a separate function so tests can make it fail midway)."""
    np.lib.format.write_array(fileobj, arr, allow_pickle=False)


def save_checkpoint(path, trees: dict[str, Any], *, config: dict | None = None,
                    scalars: dict[str, Any] | None = None, fingerprint: dict | None = None) -> Path:
    """Write ``trees`` (e.g. {"params": …, "opt_state": …, "noiser": …, "data": …}) atomically to ``path``.

    ``config`` must be JSON-serializable; ``scalars`` are numbers (epoch, …); ``fingerprint`` is
    ``model_fingerprint(kind, trees["params"], **sizes)``, whose leaves must describe
    ``trees["params"]`` (checked here, and again on load to catch damage). Returns the path written.
    """
    path = Path(path)
    arrays, empty = _entries(trees)
    if fingerprint and fingerprint.get("leaves") is not None:
        own = model_fingerprint(fingerprint.get("kind"), trees.get("params", {}), **fingerprint.get("sizes", {}))
        if own != json.loads(json.dumps(fingerprint)):
            raise ValueError("fingerprint does not describe trees['params']: "
                             + "; ".join(fingerprint_mismatch(fingerprint, own, ("fingerprint", "params"))))
    try:
        config_json = json.dumps(config or {}, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"config must be JSON-serializable: {e}") from e
    meta = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "config": np.array(config_json),
        "fingerprint": np.array(json.dumps(fingerprint or {}, sort_keys=True)),
        "layout": np.array(json.dumps({"trees": list(trees), "empty": empty})),
    }
    members = {f"{_META}/{k}": v for k, v in meta.items()}
    members.update({f"{_SCALARS}/{k}": np.asarray(v) for k, v in (scalars or {}).items()})
    members.update(arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, arr in members.items():
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                        _write_array(member, arr)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:                                                 # make the rename itself durable (POSIX; best effort)
        fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:                                      # Windows, or a file system that cannot fsync folders
        pass
    return path


def _read_members(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        z = np.load(path, allow_pickle=False)
        if isinstance(z, np.ndarray):
            raise CheckpointError(f"{path}: not an npegg checkpoint (a single .npy array, not an .npz)")
        with z:
            return {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except Exception as e:   # noqa: BLE001 — zipfile/numpy raise many types for damaged files
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint, cannot be read "
                              f"({type(e).__name__}: {e})") from e


def load_checkpoint(path, expect: dict | None = None) -> Checkpoint:
    """Read a checkpoint; with ``expect`` (a fingerprint), refuse one of another model."""
    path = Path(path)
    members = _read_members(path)
    if str(members.get(f"{_META}/format", "")) != FORMAT:
        shown = ", ".join(sorted(members)[:5]) or "none"
        raise CheckpointError(f"{path}: not an npegg checkpoint (no '{_META}/format' tag; arrays: {shown})")
    try:
        version = int(members[f"{_META}/version"])
        config, fingerprint, layout = (json.loads(str(members[f"{_META}/{k}"]))
                                       for k in ("config", "fingerprint", "layout"))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({type(e).__name__}: {e})") from e
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this npegg ({VERSION})")

    trees: dict[str, Any] = {name: {} for name in layout["trees"]}
    scalars = {}
    for key, arr in members.items():
        head, _, rest = key.partition("/")
        if head == _SCALARS:
            scalars[rest] = arr.item() if arr.ndim == 0 else arr
        elif head != _META:
            if not rest:
                trees[head] = arr                        # a tree that is one array
                continue
            node = trees.setdefault(head, {})
            *parents, last = rest.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = arr
    for p in layout["empty"]:
        node = trees
        for part in p.split("/"):
            node = node.setdefault(part, {})

    if fingerprint.get("leaves") is not None and "params" in trees:
        own = model_fingerprint(fingerprint.get("kind"), trees["params"], **fingerprint.get("sizes", {}))
        if own != fingerprint:
            diffs = fingerprint_mismatch(fingerprint, own, ("fingerprint", "params"))
            raise CheckpointError(f"{path}: damaged checkpoint, its params disagree with its own "
                                  f"fingerprint: " + "; ".join(diffs))
    if expect is not None:
        diffs = fingerprint_mismatch(fingerprint, json.loads(json.dumps(expect)))
        if diffs:
            raise CheckpointError(f"{path} is a checkpoint of another model:\n  " + "\n  ".join(diffs))
    return Checkpoint(trees=trees, config=config, scalars=scalars, fingerprint=fingerprint)


def prepare_run_dir(path, overwrite: bool = False) -> Path:
    """Create the run folder ``path``; refuse a non-empty existing one unless ``overwrite``.

    With ``overwrite=True`` nothing is deleted: the run writes its files over same-named ones.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is a file, not a run folder; choose another --out")
    if path.is_dir() and not overwrite:
        present = sorted(p.name for p in path.iterdir())
        if present:
            shown = ", ".join(present[:3]) + (", …" if len(present) > 3 else "")
            raise RunDirError(f"run folder {path} already exists and is not empty ({shown}); "
                              f"pass --overwrite to write into it anyway, or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path
