"""The coordinator's side: engines that run replicas, and ``Population``, which drives them.

One epoch over W workers (``Population``; the replica protocol is in ``replica.py``)::

    coordinator                        worker w (owns chunks S_w, ``plan.py``)
    ── "forward" ─────────────────▶    digest d_w of its state; raw_w = [forward(c) for c in S_w]
    ◀──────────────── (raw_w, d_w) ──
    raw = concat_w raw_w   (P,)        check d_w = digest(master) for every w
    ── "update", raw ─────────────▶    update(raw)          (no reply; runs while the master updates)
    ── "forward" ─────────────────▶    the next epoch's forward, asked for at once (``prefetch``,
    master.update(raw)                 local engine), so it too overlaps the master's update

So per epoch and worker, what crosses is the P raw scores down plus the worker's own |S_w| scores
and a 64-character digest up (measured in ``benchmarks/rows_parallel.py``); parameters cross only
once, when a worker starts. ``SerialEngine`` is the one-process twin: the master itself evaluates
every chunk, in the same chunks, so any worker count gives the same bits.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import numpy as np

from ..models.base_model import check_int
from .plan import deal, member_chunks


class WorkerError(RuntimeError):
    """A worker raised; the message carries its traceback."""


class WorkerLost(WorkerError):
    """A worker process or actor died (killed, out of memory, machine gone)."""

    def __init__(self, message: str, worker: int):
        super().__init__(message)
        self.worker = worker


class WorkerDiverged(WorkerError):
    """A replica's digest differs from the coordinator's: its parameters are no longer the same bits."""


class Engine:
    """Runs one replica per worker. Subclasses: ``SerialEngine``, ``LocalEngine``, ``RayEngine``."""
    name = "engine"
    remote = True

    def __init__(self, workers: int = 1):
        if isinstance(workers, (bool, np.bool_)) or not (isinstance(workers, (int, np.integer)) and workers >= 1):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = int(workers)
        self.bytes_down = [0] * self.workers      # coordinator → worker, cumulative
        self.bytes_up = [0] * self.workers        # worker → coordinator, cumulative
        self.cpu_seconds = [0.0] * self.workers   # each worker's process CPU time at its last forward reply

    def start(self, job, snapshot, shares, master) -> None:
        raise NotImplementedError

    def forward(self) -> list:
        """[(raw_w, digest_w)] for w = 0..W−1."""
        raise NotImplementedError

    def update(self, raw) -> None:
        raise NotImplementedError

    def prefetch(self) -> None:
        """Start the next ``forward`` early, if this engine can (after ``update``); here: no."""

    def carried(self) -> list:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def pids(self) -> list:
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialEngine(Engine):
    """The one-process twin: the coordinator's own replica evaluates every chunk."""
    name = "serial"
    remote = False

    def __init__(self, workers: int = 1):
        super().__init__(1)

    def start(self, job, snapshot, shares, master) -> None:
        self.master, self.share = master, [c for s in shares for c in s]

    def forward(self) -> list:
        return [(np.concatenate([self.master.forward(c) for c in self.share]), None)]

    def update(self, raw) -> None:
        pass                                          # the master is updated by ``Population``

    def carried(self) -> list:
        return [None]


#: the signals that ask a process to stop: Ctrl-C, ``kill``/``timeout``/systemd/Slurm/``docker stop``, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def signals_held(signums=STOP_SIGNALS):
    """Hold the stop signals (Ctrl-C, SIGTERM, SIGHUP) that arrive inside the block and deliver them,
    in order, when the block ends: to the handler that was there before (a Python handler is called,
    a default disposition is re-raised, an ignored signal stays ignored). Only the main thread can set
    signal handlers; elsewhere the block runs unprotected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append((signum, frame))) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for signum, frame in held:
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


class Population:
    """A master replica and an engine: ``scores()`` then ``update(raw)``, epoch after epoch."""

    def __init__(self, master, job, engine: Engine, pop_size: int, chunk: int):
        self.master, self.job, self.engine = master, job, engine
        self.chunks = member_chunks(pop_size, chunk)
        self.shares = deal(self.chunks, engine.workers if engine.remote else 1)
        engine.start(job, master.snapshot(), self.shares, master)

    def scores(self) -> np.ndarray:
        """Every member's raw score for this epoch: (P,), in member order."""
        replies = self.engine.forward()
        if self.engine.remote:
            want = self.master.digest()
            for w, (_, got) in enumerate(replies):
                if got != want:
                    raise WorkerDiverged(f"worker {w}'s parameters differ from the coordinator's (digest {got[:12]} "
                                         f"against {want[:12]}): were the workers given another BLAS or NumPy?")
        return np.concatenate([r for r, _ in replies])

    def update(self, raw) -> None:
        """Every replica applies the update from the same raw scores (workers first, so they overlap).
        A Ctrl-C (or SIGTERM, SIGHUP) meanwhile waits until every replica has it, so none is left an
        epoch behind."""
        with signals_held():
            self.engine.update(raw)
            self.engine.prefetch()          # the workers' next forward overlaps the master's update
            self.master.update(raw)

    def sync_carried(self) -> None:
        """Copy the workers' carried per-member state into the master (before a checkpoint)."""
        if self.engine.remote:
            replies, want = self.engine.carried(), self.master.digest()
            if any(digest != want for _, digest in replies):      # e.g. Ctrl-C between two replicas' updates
                raise WorkerDiverged("the workers' carried states are not at the coordinator's epoch; not saving them")
            for share, (tree, _) in zip(self.shares, replies):
                self.master.set_carried(share, tree)

    def close(self) -> None:
        self.engine.close()


class SameBlasThreads:
    """A worker's setup: the coordinator's BLAS thread count first, then the user's ``setup``.

    Every replica applies the same update to the same parameters, and OpenBLAS splits a matmul's
    sums differently on one thread and on two, so a worker on another thread count than the
    coordinator would compute other float bits and be refused as diverged. Workers therefore
    start on the count in force in the coordinator when they are made (``npegg.blas``)."""

    def __init__(self, threads, setup=None):
        self.threads, self.setup = threads, setup

    def __call__(self):
        if self.threads is not None:
            from ..blas import set_blas_threads
            set_blas_threads(int(self.threads))
        if self.setup is not None:
            self.setup()


def make_engine(engine: str = "local", workers: int = 1, **options) -> Engine:
    """``"local"`` (worker processes; one worker = the serial twin in this process) or ``"ray"``.

    Remote workers run ``SameBlasThreads``: the coordinator's BLAS thread count, then ``setup``."""
    check_int("workers", workers, 1)
    if workers > 1 and engine in ("local", "ray"):
        from ..blas import blas_info
        info = blas_info()
        options = {**options, "setup": SameBlasThreads(info[0]["num_threads"] if info else None, options.get("setup"))}
    if engine == "local":
        if workers == 1:
            return SerialEngine()
        from .local import LocalEngine
        return LocalEngine(workers, **options)
    if engine == "ray":
        from .ray_engine import RayEngine
        return RayEngine(workers, **{k: v for k, v in options.items() if k in ("setup", "silence")})
    if engine == "serial":
        return SerialEngine()
    raise ValueError(f"engine must be one of local, ray, serial; got {engine!r}")
