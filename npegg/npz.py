"""Reading ``.npz`` files that may be hostile: sizes checked before any byte is inflated, no pickle.

An ``.npz`` is a zip of ``.npy`` members. ``np.load`` trusts it: a member declared as 3 GB is
inflated in full, a header declaring a shape of 10¹² elements asks for that much memory, and
an object array is one ``allow_pickle`` away from running code. ``read_npz`` checks, in order:

1. the zip directory: every member a ``.npy``, none twice, stored or deflated, each member's
   declared size and their sum at most ``max_bytes`` (nothing is inflated yet);
2. each member as it is read: ``zipfile`` stops at the declared size and checks the CRC-32, so
   a member whose data inflates past its declared size fails here instead of filling memory;
3. each member's ``.npy`` header (``parse_npy``): a known version, no Python objects, and
   exactly shape·itemsize data bytes (a huge declared shape with little data is refused).

Every failure is an ``NpzError`` whose message names the file and the member. The checkpoint
reader (``npegg.program.checkpoint_read``) uses ``parse_npy`` for its members; the golden-vector
readers (``npegg.oracle.vectorfile``) use ``read_npz``.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

#: default bound on the uncompressed bytes of one file (every member together)
MAX_BYTES = 1 << 30


class NpzError(ValueError):
    """An .npz file that cannot be read safely; the message names the file and the member."""


def parse_npy(raw: bytes, where: str) -> np.ndarray:
    """The array in one member's ``.npy`` bytes: header, then exactly shape·itemsize data bytes.

    ``where`` prefixes every message (``"<file>: member 'x'"``). Object (pickled) arrays are
    refused from the header, before their data is looked at; the element count is computed in
    Python integers, so no declared shape overflows it.
    """
    f = io.BytesIO(raw)
    try:
        major, _ = np.lib.format.read_magic(f)
    except ValueError as e:
        raise NpzError(f"{where} is not a .npy array ({e})") from e
    if major not in (1, 2, 3):
        raise NpzError(f"{where} has an unknown .npy version {major}")
    header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = header(f)
    except ValueError as e:
        raise NpzError(f"{where} has an unreadable .npy header ({e})") from e
    if dtype.hasobject:
        raise NpzError(f"{where} holds Python objects (a pickle); npegg never loads them")
    count = math.prod(shape)
    data = memoryview(raw)[f.tell():]
    if len(data) != count * dtype.itemsize:
        raise NpzError(f"{where} has {len(data):,} data bytes, its header says {count * dtype.itemsize:,} "
                       f"(shape {tuple(shape)}, {dtype}); damaged file")
    arr = np.frombuffer(data, dtype=dtype, count=count).copy()
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def read_npz(path, *, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path`` as an array, keyed without ``.npy``.

    Raises ``NpzError`` naming the file (and member) on the first failed check of the module's
    list; at most ``max_bytes`` are ever inflated.
    """
    path = Path(path)
    if not path.is_file():
        raise NpzError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos, total = {}, 0
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or not name.endswith(".npy"):
                    raise NpzError(f"{path}: member {name!r} is not a .npy array")
                if name[:-4] in infos:
                    raise NpzError(f"{path}: member {name!r} appears twice; damaged file")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise NpzError(f"{path}: member {name!r} uses zip compression method {info.compress_type}; "
                                   f"only stored and deflated members are read")
                total += info.file_size
                if total > max_bytes:
                    raise NpzError(f"{path}: member {name!r} declares {info.file_size:,} bytes uncompressed, "
                                   f"{total:,} with the members before it: more than the {max_bytes:,} allowed "
                                   f"(a zip bomb, or a file larger than this reader's limit)")
                infos[name[:-4]] = info
            return {key: parse_npy(zf.read(info), f"{path}: member {key!r}") for key, info in infos.items()}
    except NpzError:
        raise
    except Exception as e:   # noqa: BLE001 — zipfile and zlib raise many types for damaged files
        raise NpzError(f"{path}: corrupt or truncated file, cannot be read ({type(e).__name__}: {e})") from e
