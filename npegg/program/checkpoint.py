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
from .fingerprint import fingerprint_mismatch, model_fingerprint, tree_differences  # noqa: F401 (re-exported)

FORMAT = "npegg-checkpoint"
VERSION = 2
#: bytes a metadata member (JSON text) may declare; real ones are a few kB
MAX_META_BYTES = 64 << 20
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


# -- loading --------------------------------------------------------------------------------------
def _npy_array(path: Path, key: str, raw: bytes) -> np.ndarray:
    """Parse one member's ``.npy`` bytes: header, then exactly shape·itemsize data bytes.

    Object (pickled) arrays are refused from the header, before their data is looked at.
    """
    f = io.BytesIO(raw)
    major, _ = np.lib.format.read_magic(f)
    if major not in (1, 2, 3):
        raise CheckpointError(f"{path}: member {key!r} has an unknown .npy version {major}")
    header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(f)
    if dtype.hasobject:
        raise CheckpointError(f"{path}: member {key!r} holds Python objects (a pickle); npegg never loads them")
    count = int(np.prod(shape, dtype=np.int64))
    data = memoryview(raw)[f.tell():]
    if len(data) != count * dtype.itemsize:
        raise CheckpointError(f"{path}: member {key!r} has {len(data)} data bytes, its header says "
                              f"{count * dtype.itemsize}; damaged checkpoint")
    arr = np.frombuffer(data, dtype=dtype, count=count).copy()
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def _read_members(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Every member as an array, after checks 1–3 of the module docstring; and the format version."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise CheckpointError(f"{path}: not an npegg checkpoint (a single .npy array, not an .npz)")
        with zipfile.ZipFile(path) as zf:
            infos = {}
            for info in zf.infolist():
                name = info.filename
                if not name.endswith(".npy") or info.is_dir():
                    raise CheckpointError(f"{path}: member {name!r} is not a .npy array; an npegg "
                                          f"checkpoint holds nothing else")
                if name[:-4] in infos:
                    raise CheckpointError(f"{path}: member {name!r} appears twice; damaged checkpoint")
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise CheckpointError(f"{path}: member {name!r} is compressed ({info.compress_size:,} bytes "
                                          f"declared to expand to {info.file_size:,}); npegg writes members "
                                          f"uncompressed and refuses compressed ones")
                infos[name[:-4]] = info

            def meta(name):
                info = infos.get(f"{_META}/{name}")
                if info is None:
                    return None
                if info.file_size > MAX_META_BYTES:
                    raise CheckpointError(f"{path}: metadata member {name!r} declares {info.file_size:,} bytes, "
                                          f"more than the {MAX_META_BYTES:,} allowed")
                return _npy_array(path, f"{_META}/{name}", zf.read(info))

            tag = meta("format")
            if tag is None or tag.shape != () or tag.dtype.kind != "U" or str(tag) != FORMAT:
                shown = ", ".join(sorted(infos)[:5]) or "none"
                raise CheckpointError(f"{path}: not an npegg checkpoint (no '{_META}/format' tag; arrays: {shown})")
            version = meta("version")
            if version is None or version.shape != () or version.dtype.kind not in "iu":
                raise CheckpointError(f"{path}: damaged checkpoint metadata (the format version is missing "
                                      f"or not an integer)")
            version = int(version)
            if version < 1:
                raise CheckpointError(f"{path}: checkpoint format version {version} does not exist "
                                      f"(versions are 1 to {VERSION})")
            if version > VERSION:
                raise CheckpointError(f"{path}: checkpoint format {version} is newer than this npegg ({VERSION})")
            manifest = None
            if version >= 2:
                manifest = _manifest(path, meta("manifest"))
                listed = set(manifest) | {f"{_META}/manifest"}
                unknown, missing = sorted(set(infos) - listed), sorted(listed - set(infos))
                if unknown:
                    raise CheckpointError(f"{path}: members not in its manifest: {', '.join(unknown[:5])}; "
                                          f"damaged or altered checkpoint")
                if missing:
                    raise CheckpointError(f"{path}: members listed in its manifest are missing: "
                                          f"{', '.join(missing[:5])}; damaged or truncated checkpoint")
                for key, entry in manifest.items():
                    if infos[key].file_size != entry["bytes"]:
                        raise CheckpointError(f"{path}: member {key!r} declares {infos[key].file_size:,} bytes, "
                                              f"its manifest {entry['bytes']:,}; damaged or altered checkpoint")
            members = {}
            for key, info in infos.items():
                if key == f"{_META}/manifest":
                    continue
                raw = zf.read(info)                       # zipfile checks the CRC-32 as it reads
                if manifest is not None:
                    entry = manifest[key]
                    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
                        raise CheckpointError(f"{path}: member {key!r} does not match its checksum; "
                                              f"damaged checkpoint")
                arr = _npy_array(path, key, raw)
                if manifest is not None and (arr.dtype.str != entry["dtype"] or list(arr.shape) != entry["shape"]):
                    raise CheckpointError(f"{path}: member {key!r} is {arr.dtype} {arr.shape}, its manifest says "
                                          f"{entry['dtype']} {tuple(entry['shape'])}")
                members[key] = arr
            return members, version
    except CheckpointError:
        raise
    except Exception as e:   # noqa: BLE001 — zipfile/numpy raise many types for damaged files
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint, cannot be read "
                              f"({type(e).__name__}: {e})") from e


def _manifest(path: Path, arr) -> dict:
    """The manifest member, checked to be {key: {"dtype": str, "shape": [int ≥ 0], "bytes": int, "sha256": str}}."""
    def bad(why):
        return CheckpointError(f"{path}: damaged checkpoint manifest ({why})")
    if arr is None:
        raise bad(f"'{_META}/manifest' is missing")
    if arr.shape != () or arr.dtype.kind != "U":
        raise bad("not a JSON string")
    try:
        manifest = json.loads(str(arr))
    except ValueError as e:
        raise bad(f"not JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    for key, e in manifest.items():
        ok = (isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("sha256"), str)
              and isinstance(e.get("bytes"), int) and isinstance(e.get("shape"), list)
              and all(isinstance(n, int) and n >= 0 for n in e["shape"]))
        if not ok:
            raise bad(f"entry {key!r} is not {{dtype, shape, bytes, sha256}}")
    return manifest


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
    """Read and verify a checkpoint (module docstring); with ``expect`` (a fingerprint), refuse one of another model."""
    path = Path(path)
    members, _ = _read_members(path)
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
