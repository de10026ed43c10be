"""Discovery of golden vectors for the parity tests.

Vectors are read from ``tests/reference/`` (the reference's vectors, shipped with the repository:
see its README), always, and from every folder named in ``NPEGG_PARITY_DIR`` (a list of paths
joined by ``os.pathsep``), which *adds* folders, for instance held-out vectors or a backend's own
exports. A named folder that does not exist is an error at collection, never a silent skip.

Every file is read through ``load``, which validates it against the schema
(``npegg/oracle/vectors.schema.json``) before any test compares a number, so the parity tests
check every shipped and added file's format as well as its values.

Tests are parametrized by file. The id of a shipped file is its stem (``pytest -k egg_fwd_h16``);
a file from an added folder gets ``<folder name>/<stem>``, so the same stem in two folders gives
two tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from npegg.oracle.vectorfile import read_vectors

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
ENV = "NPEGG_PARITY_DIR"


def parity_dirs() -> list:
    """tests/reference, then every folder of NPEGG_PARITY_DIR (each must exist)."""
    extra = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]
    for d in extra:
        if not d.is_dir():
            raise pytest.UsageError(f"{ENV} names {str(d)!r}, which is not a folder; it must be a list of "
                                    f"folders of golden vectors joined by {os.pathsep!r}")
    return [REFERENCE_DIR] + [d for d in extra if d.resolve() != REFERENCE_DIR]


def parity_files(pattern: str) -> list:
    """pytest params, one per file matching ``pattern`` in every parity folder."""
    params = []
    for d in parity_dirs():
        for f in sorted(d.glob(pattern)):
            params.append(pytest.param(f, id=f.stem if d == REFERENCE_DIR else f"{d.name}/{f.stem}"))
    return params


def load(path) -> dict:
    """All arrays of one vector file as a plain dict, read as every reader should
    (``npegg.oracle.vectorfile.read_vectors``): declared sizes checked before anything is inflated,
    no pickle, and every key, dtype, shape and range validated against the schema. A file that
    fails raises ``VectorFileError`` naming the file and the key."""
    return read_vectors(path).arrays


def group(vec: dict, prefix: str) -> dict:
    """Sub-dict of keys under ``prefix/`` with the prefix stripped."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in vec.items() if k.startswith(prefix + "/")}


def checker_module():
    """examples/check_vectors.py as a module: its ``Checker`` (records every differing stage, the
    terms-scaled float bound of docs/vectors.md) and the functions that give each stage's terms."""
    import importlib.util
    import sys
    if "check_vectors" not in sys.modules:
        spec = importlib.util.spec_from_file_location("check_vectors", REPO / "examples" / "check_vectors.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["check_vectors"] = mod
    return sys.modules["check_vectors"]


def stages(path):
    """A ``Checker`` for one file: compare every stage with ``.close``/``.exact``, then ``all_pass(c)``."""
    return checker_module().Checker(Path(path).name)


def all_pass(c) -> None:
    """Fail once, listing every stage that differed (not only the first)."""
    assert not c.diffs, f"{len(c.diffs)} of {c.count} stages differ:\n" + "\n".join(c.diffs)


def exact(c, got, v: dict, key: str) -> None:
    """Record in ``c`` whether ``got`` has the dtype and every bit of ``v[key]`` (and go on either way)."""
    import numpy as np
    got = np.asarray(got)
    if got.dtype != v[key].dtype:
        c.diffs.append(f"{c.name}: {key}: dtype {got.dtype}, expected {v[key].dtype}")
    c.exact(got, v, key)
