"""Reading a checkpoint's members with every check done before anything is used.

``read_members`` does checks 1–3 of ``npegg.program.checkpoint``'s list: the zip directory (only
uncompressed, unique ``.npy`` members), the format tag and version, and for version ≥ 2 the
manifest (no unlisted or missing member, declared sizes equal to the manifest's before any array
byte is read; then each member's sha256, dtype and shape). ``_npy_array`` parses one member's
bytes without ever unpickling. The metadata checks (4, 5) stay in ``checkpoint.load_checkpoint``.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..npz import NpzError, parse_npy

FORMAT = "npegg-checkpoint"
VERSION = 2
#: bytes a metadata member (JSON text) may declare; real ones are a few kB
MAX_META_BYTES = 64 << 20
_META, _SCALARS = "__npegg__", "__scalars__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not npegg's, or of another model."""


# -- members --------------------------------------------------------------------------------------
def _npy_array(path: Path, key: str, raw: bytes) -> np.ndarray:
    """Parse one member's ``.npy`` bytes (``npegg.npz.parse_npy``: no pickle, exact data length)."""
    try:
        return parse_npy(raw, f"{path}: member {key!r}")
    except NpzError as e:
        raise CheckpointError(str(e)) from e


def read_members(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Every member of the checkpoint at ``path`` as an array, and its format version.

    Raises ``CheckpointError`` naming the file and the member on the first failed check (1–3 of
    ``npegg.program.checkpoint``); nothing is decompressed or unpickled on the way.
    """
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
