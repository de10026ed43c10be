"""``npegg train``'s BLAS threads and the record of what its float bits depend on.

The policy is the library's (``npegg.blas``): one BLAS thread per process unless the user chose
otherwise, more cores through more worker processes. The thread count is part of what float
results depend on (OpenBLAS splits sums differently on one thread and on two), so a checkpoint
records ``blas_config`` and a resumed run warns when its own differs (``config_differences``);
integer results (``--mode int``) do not depend on it.
"""
from __future__ import annotations

import os

from ..blas import blas_info, set_blas_threads

__all__ = ["set_blas_threads", "default_blas_threads", "blas_config", "config_differences"]

_ENV = ("NPEGG_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _count(value: str) -> int | None:
    """A thread count written in ASCII digits (``str.isdigit`` also takes '²' and '٣'), else None."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) <= 4096 else None


def requested_blas_threads() -> int:
    """The thread count asked for: NPEGG_BLAS_THREADS, else OPENBLAS_NUM_THREADS or OMP_NUM_THREADS
    (values OpenBLAS itself would ignore are ignored here too), else 1. ValueError naming
    NPEGG_BLAS_THREADS when it is set to anything but a whole number in [1, 4096]."""
    mine = os.environ.get("NPEGG_BLAS_THREADS")
    if mine is not None and mine.strip():
        if _count(mine) is None:
            raise ValueError(f"NPEGG_BLAS_THREADS must be a whole number of threads from 1 to 4096 "
                             f"(ASCII digits), got {mine!r}")
        return _count(mine)
    for var in _ENV[1:]:
        n = _count(os.environ.get(var, ""))
        if n is not None:
            return n
    return 1


def default_blas_threads() -> bool:
    """One BLAS thread (npegg's tall, thin matmuls run faster on one) unless NPEGG_BLAS_THREADS,
    OPENBLAS_NUM_THREADS or OMP_NUM_THREADS says otherwise (NPEGG_BLAS_THREADS wins; a bad value
    of it is a ValueError naming it, ``requested_blas_threads``)."""
    return set_blas_threads(requested_blas_threads())


def blas_config() -> dict:
    """What the float bits depend on: {"numpy": version, "blas": "<api> <version> <kernel> <threading>",
    "threads": n or None}, from threadpoolctl's description of the first BLAS loaded (``npegg.blas``);
    "unknown" and None where none was found."""
    import numpy
    info = blas_info()
    if not info:
        return {"numpy": numpy.__version__, "blas": "unknown", "threads": None}
    b = info[0]
    blas = " ".join(str(b.get(k)) for k in ("internal_api", "version", "architecture", "threading_layer"))
    return {"numpy": numpy.__version__, "blas": blas, "threads": b.get("num_threads")}


def _comparable(blas) -> str:
    """A BLAS description reduced to what both record formats hold: "<api> <version> <kernel>".

    Checkpoints written before npegg used threadpoolctl hold OpenBLAS's own config string,
    "OpenBLAS <version> <build options…> <kernel> MAX_THREADS=<n>"; today's hold
    "openblas <version> <kernel> <threading>". Both reduce to "openblas <version> <kernel>"."""
    words = str(blas).split()
    if len(words) >= 3 and words[0] == "OpenBLAS" and words[-1].startswith("MAX_THREADS="):
        return f"openblas {words[1]} {words[-2]}"
    return " ".join(words[:3])


def config_differences(saved: dict, now: dict) -> list[str]:
    """'threads: checkpoint 1, now 2'-style differences between two ``blas_config`` records."""
    out = []
    for k in ("numpy", "blas", "threads"):
        a, b = saved.get(k), now.get(k)
        same = _comparable(a) == _comparable(b) if k == "blas" else a == b
        if not same:
            out.append(f"{k}: checkpoint {a!r}, now {b!r}")
    return out
