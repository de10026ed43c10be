"""Discovery of golden vectors for the parity tests.

Vectors live in the folder named by ``NPEGG_PARITY_DIR`` (default: ``../shared/parity`` beside
this checkout). Tests are parametrized by file, and each test id is the file's stem, so
``pytest -k egg_fwd_h16`` selects one file. A fresh clone has no ``../shared``: then every
parity test is skipped with a message that says where it looked.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PARITY_DIR = Path(os.environ.get("NPEGG_PARITY_DIR", REPO.parent / "shared" / "parity"))


def parity_files(pattern: str) -> list:
    """pytest params, one per file matching ``pattern`` in PARITY_DIR, id = file stem."""
    if not PARITY_DIR.is_dir():
        reason = (f"parity folder {PARITY_DIR} does not exist; set NPEGG_PARITY_DIR to a folder of "
                  f"golden vectors (see ../shared/parity/README.md) to run the parity tests")
        return [pytest.param(None, id=f"no-parity-dir[{pattern}]", marks=pytest.mark.skip(reason=reason))]
    files = sorted(PARITY_DIR.glob(pattern))
    return [pytest.param(f, id=f.stem) for f in files]


def load(path) -> dict:
    """All arrays of one .npz file as a plain dict (loaded eagerly, no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def group(vec: dict, prefix: str) -> dict:
    """Sub-dict of keys under ``prefix/`` with the prefix stripped."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in vec.items() if k.startswith(prefix + "/")}
