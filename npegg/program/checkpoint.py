"""Checkpoints: named trees of arrays, a config and scalars in one ``.npz``, written atomically.

Layout of the file (a zip of uncompressed ``.npy`` members; nothing is pickled)::

    <tree>/<path>            one array per leaf, e.g. params/blocks/att/Wf, opt_state/mu/…, data/pos
    <tree>                   a tree that is a single array rather than a dict
    __scalars__/<name>       0-d arrays: epoch, …
    __npegg__/format         "npegg-checkpoint"          0-d str arrays (np.array(str), not pickle)
    __npegg__/version        2                           0-d int64
    __npegg__/config         json.dumps(config)
    __npegg__/fingerprint    json.dumps(model_fingerprint(…))
    __npegg__/layout         json.dumps({"trees": [names], "empty": [paths of empty dicts]})
    __npegg__/manifest       json.dumps({member: {"dtype", "shape", "bytes", "sha256"}}) for every
                             other member: its dtype, shape, size of its .npy bytes and their sha256

Leaves come back as arrays (a Python scalar leaf comes back as a 0-d array); scalars come back as
Python numbers. Empty dicts survive the round trip through ``layout``.

Writing goes through ``npegg.program.atomic.atomic_write`` (temporary file, fsync, rename), so a
crash mid-write leaves the previous checkpoint intact. Loading verifies, and raises
``CheckpointError`` naming the file and what is wrong, before using anything:

1. the zip's directory: every member is a ``.npy`` file, stored uncompressed (a compressed member
   could inflate without bound), names unique;
2. the format tag, and a version in 1..VERSION;
3. (version ≥ 2) the manifest: no member it does not list, none it lists missing, every declared
   size equal to the manifest's, all before a byte of any array is read; then each member's
   sha256, dtype and shape (the zip's CRC-32 is checked as well);
4. the metadata's types (config, fingerprint and layout are JSON objects, a non-negative integer
   epoch), no pickled object arrays, and that the stored fingerprint describes the stored params;
5. with ``expect``, that the fingerprint equals the running model's.

So a damaged file is either refused or loads exactly what was saved. Version-1 files (written
before the manifest existed) still load: they get every check except 3, as before.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .checkpoint_read import _META, _SCALARS, FORMAT, VERSION, CheckpointError, read_members
from .run_folder import contents
from .fingerprint import fingerprint_mismatch, model_fingerprint, tree_differences  # noqa: F401 (re-exported)


class RunDirError(FileExistsError):
    """A run folder that would be overwritten without ``overwrite=True``."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: {tree name: nested dict of arrays}, config, scalars, fingerprint."""
    trees: dict[str, Any]
    config: dict = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)


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


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    _write_array(buf, arr)
    return buf.getvalue()


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
        config_json = json.dumps(config or {}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config must be JSON-serializable: {e}") from e
    meta = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "config": np.array(config_json),
        "fingerprint": np.array(json.dumps(fingerprint or {}, sort_keys=True)),
        "layout": np.array(json.dumps({"trees": list(trees), "empty": empty})),
    }
    members = {f"{_META}/{k}": v for k, v in meta.items()}
    for k, v in (scalars or {}).items():
        v = np.asarray(v)
        if v.dtype.hasobject:
            raise ValueError(f"scalar {k!r}: cannot store a {type(v).__name__} without pickle")
        members[f"{_SCALARS}/{k}"] = v
    members.update(arrays)

    def write(f):
        manifest = {}
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in members.items():
                raw = _npy_bytes(arr)
                manifest[key] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "bytes": len(raw),
                                 "sha256": hashlib.sha256(raw).hexdigest()}
                zf.writestr(f"{key}.npy", raw)
            zf.writestr(f"{_META}/manifest.npy", _npy_bytes(np.array(json.dumps(manifest, sort_keys=True))))
    return atomic_write(path, write)


def _json_meta(path: Path, members: dict, name: str) -> dict:
    arr = members.get(f"{_META}/{name}")
    if arr is None or arr.shape != () or arr.dtype.kind != "U":
        raise CheckpointError(f"{path}: damaged checkpoint metadata ('{_META}/{name}' is missing or not a string)")
    try:
        value = json.loads(str(arr))
    except ValueError as e:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ('{_META}/{name}' is not JSON: {e})") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: damaged checkpoint metadata ('{_META}/{name}' must be a JSON object, "
                              f"found {type(value).__name__})")
    return value


def load_checkpoint(path, expect: dict | None = None) -> Checkpoint:
    """Read and verify the checkpoint at ``path``: checks 1–5 of this module's list, then the trees.

    Returns a ``Checkpoint`` (trees as nested dicts of arrays, config, scalars, fingerprint). With
    ``expect`` (a ``model_fingerprint``), a checkpoint of another model is refused. Every failure
    is a ``CheckpointError`` naming the file and what is wrong.
    """
    path = Path(path)
    members, _ = read_members(path)
    config, fingerprint, layout = (_json_meta(path, members, k) for k in ("config", "fingerprint", "layout"))
    names, empty = layout.get("trees"), layout.get("empty")
    if not (isinstance(names, list) and isinstance(empty, list)
            and all(isinstance(x, str) and x for x in names + empty)):
        raise CheckpointError(f"{path}: damaged checkpoint metadata (layout must list tree names and empty paths)")
    if not (isinstance(fingerprint.get("sizes", {}), dict) and isinstance(fingerprint.get("leaves", {}), (dict, type(None)))):
        raise CheckpointError(f"{path}: damaged checkpoint metadata (fingerprint sizes and leaves must be objects)")

    trees: dict[str, Any] = {name: {} for name in names}
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
                if not isinstance(node, dict):
                    raise CheckpointError(f"{path}: damaged checkpoint layout ({key!r} is inside an array)")
            node[last] = arr
    for p in empty:
        node = trees
        for part in p.split("/"):
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node:
            raise CheckpointError(f"{path}: damaged checkpoint layout (empty path {p!r} holds arrays)")
    epoch = members.get(f"{_SCALARS}/epoch")
    if epoch is not None and (epoch.shape != () or epoch.dtype.kind not in "iu" or int(epoch) < 0):
        raise CheckpointError(f"{path}: damaged checkpoint (epoch must be an integer >= 0, found {epoch!r})")

    if fingerprint.get("leaves") is not None and "params" in trees:
        try:
            own = model_fingerprint(fingerprint.get("kind"), trees["params"], **fingerprint.get("sizes", {}))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: damaged checkpoint fingerprint ({e})") from e
        if own != fingerprint:
            diffs = fingerprint_mismatch(fingerprint, own, ("fingerprint", "params"))
            raise CheckpointError(f"{path}: damaged checkpoint, its params disagree with its own "
                                  f"fingerprint: " + "; ".join(diffs))
    if expect is not None:
        diffs = fingerprint_mismatch(fingerprint, json.loads(json.dumps(expect)))
        if diffs:
            raise CheckpointError(f"{path} is a checkpoint of another model:\n  " + "\n  ".join(diffs))
    return Checkpoint(trees=trees, config=config, scalars=scalars, fingerprint=fingerprint)


def check_run_dir(path, overwrite: bool = False) -> None:
    """Refuse a ``path`` that is a file, or a non-empty folder unless ``overwrite`` (``RunDirError``).

    The run folder's lock file (``run_folder.LOCK``) does not count: it holds no work of anyone's.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is a file, not a run folder; choose another --out")
    if path.is_dir() and not overwrite:
        present = contents(path)
        if present:
            shown = ", ".join(present[:3]) + (", …" if len(present) > 3 else "")
            raise RunDirError(f"run folder {path} already exists and is not empty ({shown}); "
                              f"pass --overwrite to write into it anyway, or choose another --out")


def prepare_run_dir(path, overwrite: bool = False) -> Path:
    """Create the run folder ``path``; refuse a non-empty existing one unless ``overwrite`` (``check_run_dir``).

    With ``overwrite=True`` nothing is deleted: the run writes its files over same-named ones.
    """
    path = Path(path)
    check_run_dir(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    return path
