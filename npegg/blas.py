"""How many threads the BLAS under NumPy uses: npegg's one policy, on threadpoolctl.

**The policy.** npegg never changes the BLAS thread count by itself: importing it, creating an
``ES`` or calling ``forward``/``step`` leaves the process as it was. Whoever runs the loop
chooses, with ``blas_threads`` (a context manager) or ``set_blas_threads`` (for the rest of the
process); the examples, the book and ``npegg train`` choose one thread per process, and get
more cores through more processes (``npegg.parallel``), not more BLAS threads. Worker processes
take the coordinator's count when they start (``npegg.parallel.engine.SameBlasThreads``): every
replica must compute the same bits, and the count is part of what float bits depend on.

Why one thread: ES's matmuls are tall and thin, (P·T, D) @ (D, O) with D of 32 to 256, and a
multithreaded OpenBLAS splits them badly; on a 2-vCPU machine that shares one core's vector
units such a matmul ran an order of magnitude slower on two threads than on one
(``benchmarks/lm_tuning_record.md``; the README's quick start states its time under this
policy). Why it matters for bits: OpenBLAS splits a matmul's sums differently on one thread and
on two, so float32 results differ in their last bits and a long trajectory drifts apart;
integer results (``npegg.int8``) do not depend on it (docs/determinism.md).

Built on threadpoolctl (the scikit-learn project's library for exactly this): it finds every
BLAS/OpenMP library loaded in the process and sets its threads at run time, which the
``OPENBLAS_NUM_THREADS`` variable can only do before NumPy is imported.
"""
from __future__ import annotations

from contextlib import contextmanager


def _check(n) -> int:
    from .models.base_model import check_int
    return check_int("n (BLAS threads)", n, 1)


def _blas_controllers():
    import numpy  # noqa: F401  (the BLAS must be loaded before threadpoolctl looks for it)
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController().select(user_api="blas")


@contextmanager
def blas_threads(n: int):
    """Run the ``with`` block with every loaded BLAS on ``n`` threads, then restore the counts.

    Example::

        with blas_threads(1):
            for epoch in range(1000):
                state = es.step(state, fitness(es.forward(state, x)))
    """
    n = _check(n)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def set_blas_threads(n: int) -> bool:
    """Put every loaded BLAS on ``n`` threads for the rest of the process; True if there was one."""
    n = _check(n)
    controllers = _blas_controllers()
    controllers.limit(limits=n)
    return bool(controllers.lib_controllers)


def blas_info() -> list[dict]:
    """Every loaded BLAS: [{"internal_api", "version", "architecture", "threading_layer",
    "num_threads"}, …] (threadpoolctl's description; empty where none was found)."""
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads")
    return [{k: lc.info().get(k) for k in keys} for lc in _blas_controllers().lib_controllers]
