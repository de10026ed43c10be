"""Reading and writing golden-vector files: safely, checked against the schema, never half-written.

``read_vectors(path)`` is what every reader of vector files uses (``examples/check_vectors.py``,
the parity tests, a port's own Python harness):

1. ``npegg.npz.read_npz``: the zip's declared sizes against ``max_bytes`` before anything is
   inflated (a 3 MB file that inflates to 3 GB is refused), no pickle, each ``.npy`` header's
   shape against its data;
2. ``npegg.oracle.schema.validate``: every key, dtype, shape and range of the file's kind.

It returns a ``Vectors`` (kind, format version, arrays) or raises ``VectorFileError`` with one
line naming the file, the key, what was expected and what was found.

``save_vectors(path, arrays)`` adds ``format_version``, validates the arrays against the schema
(an export that breaks its own format fails before writing) and writes the ``.npz`` through
``write``, a function ``write(path, fill)`` that calls ``fill(binary_file)``. ``npegg
export-vectors`` passes ``npegg.program.atomic.atomic_write`` (temporary file, fsync, rename),
so a full disk or an interrupt leaves no partial file; the default removes a partial file
itself.
"""
from __future__ import annotations

import io

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..npz import NpzError, read_npz
from .schema import VERSION_KEY, VectorFileError, load_schema, validate

#: uncompressed bytes one vector file may hold; the largest shipped file holds 2.3 MB
MAX_BYTES = 256 << 20


class UnreadableVectorFile(VectorFileError):
    """The file itself cannot be read safely: damaged, not a zip of .npy arrays, or over the size limit."""


@dataclass(frozen=True)
class Vectors:
    """One validated vector file: its kind (a key of the schema's ``kinds``), version and arrays."""
    path: Path
    kind: str
    version: int
    arrays: dict


def read_vectors(path, *, max_bytes: int = MAX_BYTES) -> Vectors:
    """Read and validate one vector file (module steps 1–2); ``VectorFileError`` on any failure."""
    path = Path(path)
    try:
        arrays = read_npz(path, max_bytes=max_bytes)
    except NpzError as e:
        raise UnreadableVectorFile(str(e)) from e
    kind, version = validate(path, arrays)
    return Vectors(path, kind, version, arrays)


def _write_plain(path: Path, fill) -> Path:
    try:
        with open(path, "wb") as f:
            fill(f)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def save_vectors(path, arrays: dict, *, write=None) -> Path:
    """Write ``arrays`` (plus ``format_version``) as a compressed ``.npz`` after validating them."""
    path = Path(path)
    arrays = {VERSION_KEY: np.int32(load_schema()["format_version"]), **arrays}
    validate(path, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()       # the archive is made in memory and written in one piece: NumPy < 1.24's savez
    np.savez_compressed(buf, **arrays)  # leaves its ZipFile open when the file fails (a full disk), and its
    data = buf.getvalue()               # clean-up later prints an "Exception ignored … seek of closed file"
    return (write or _write_plain)(path, lambda f: f.write(data))


def noise_table_log2(params: dict, rank: int, floor: int) -> int:
    """log₂ of a noise table large enough for every member's slice of these (flattened) params.

    A low-rank leaf (…, a, b) reads (a + b)·r entries, a full-rank leaf at most 2·size; the table
    is kept at least 4 times the largest slice (so starts spread) and at least 2^floor.
    """
    need = max(((p.shape[-2] + p.shape[-1]) * rank if p.ndim >= 2 else 2 * p.size) for p in params.values())
    return max(int(floor), (4 * need - 1).bit_length())
