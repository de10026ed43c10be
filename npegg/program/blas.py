"""How many threads the BLAS under NumPy may use, set at run time (no dependency).

npegg's matmuls are tall and thin: (P·T, D) @ (D, O) with D of 32 to 256. Multithreaded OpenBLAS
handles these badly: on a machine whose two vCPUs share one core's vector units, such a matmul
ran an order of magnitude slower on two threads than on one (measurements:
``benchmarks/lm_tuning_record.md``). So ``npegg train`` runs BLAS on one thread unless the user
chose otherwise.

``OPENBLAS_NUM_THREADS`` only works when set before NumPy is imported, so this module calls
OpenBLAS's own ``openblas_set_num_threads`` (under the names the NumPy wheels export) on the
library NumPy has already loaded, found through ``/proc/self/maps``. It does nothing where that is
not possible (another BLAS, another OS).

The thread count is not only a matter of speed: OpenBLAS splits a matmul's sums differently on
one thread and on two, so float32 results differ in their last bits, and a trajectory of many
epochs drifts apart (integer results, ``--mode int``, do not depend on it). Float results are
bit-reproducible on the same machine with the same NumPy/BLAS build and the same thread count.
``blas_config`` describes all three; a checkpoint records it, and a resumed run warns when its
own differs (``config_differences``).
"""
from __future__ import annotations

import ctypes
import os

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = tuple(n.replace("set_num", "get_num") for n in _SETTERS)
_CONFIGS = ("scipy_openblas_get_config64_", "scipy_openblas_get_config", "openblas_get_config64_",
            "openblas_get_config")
_ENV = ("NPEGG_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _loaded_openblas() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(paths)


def _openblas_functions(names):
    """For every OpenBLAS loaded in this process, the first of ``names`` it exports (a ctypes function)."""
    import numpy  # noqa: F401  (make sure the BLAS is loaded before looking for it)
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        fn = next((getattr(lib, name) for name in names if getattr(lib, name, None) is not None), None)
        if fn is not None:
            yield fn


def set_blas_threads(n: int) -> bool:
    """Ask every OpenBLAS loaded in this process to use ``n`` threads; True if one accepted."""
    done = False
    for fn in _openblas_functions(_SETTERS):
        fn.argtypes, fn.restype = [ctypes.c_int], None
        fn(int(n))
        done = True
    return done


def default_blas_threads() -> bool:
    """One BLAS thread (npegg's tall, thin matmuls run faster on one) unless NPEGG_BLAS_THREADS,
    OPENBLAS_NUM_THREADS or OMP_NUM_THREADS says otherwise (NPEGG_BLAS_THREADS wins)."""
    for var in _ENV:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return set_blas_threads(int(value))
    return set_blas_threads(1)


def _openblas_call(names, restype):
    """The first of ``names`` found in a loaded OpenBLAS, called with no argument; None if none is."""
    for fn in _openblas_functions(names):
        fn.argtypes, fn.restype = [], restype
        return fn()
    return None


def blas_config() -> dict:
    """What the float bits depend on: {"numpy": version, "blas": build string, "threads": n or None}.

    ``blas`` is OpenBLAS's own description (version, build options and the CPU kernel it chose),
    or NumPy's build information for another BLAS; ``threads`` is the count in force now, None
    where it cannot be read.
    """
    import numpy
    raw = _openblas_call(_CONFIGS, ctypes.c_char_p)
    if raw is not None:
        blas = " ".join(raw.decode("ascii", "replace").split())
    else:
        try:
            info = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = f"{info.get('name', '?')} {info.get('version', '?')}"
        except Exception:    # noqa: BLE001 — NumPy < 1.25 has no mode="dicts"; the build is then unknown
            blas = "unknown"
    threads = _openblas_call(_GETTERS, ctypes.c_int)
    return {"numpy": numpy.__version__, "blas": blas, "threads": None if threads is None else int(threads)}


def config_differences(saved: dict, now: dict) -> list[str]:
    """'threads: checkpoint 1, now 2'-style differences between two ``blas_config`` records."""
    return [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
            for k in ("numpy", "blas", "threads") if saved.get(k) != now.get(k)]
