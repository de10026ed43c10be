"""``LocalEngine``: worker processes on this machine, standard library only.

Each worker is a ``multiprocessing`` process (``spawn`` by default: the same on Linux, macOS and
Windows, and nothing inherited from the coordinator's threads) joined to the coordinator by one
pipe. Messages are pickled by hand (``send_bytes``) so the bytes that cross can be counted.
Liveness: the coordinator waits on the pipe *and* the process sentinel, so a worker that dies
is noticed at once (``WorkerLost``) instead of hanging the run; a worker whose parent disappears
sees its pipe close and exits. Workers ignore SIGINT: Ctrl-C reaches the whole process group,
and it is the coordinator that decides what happens (save, then ``close``), so no worker is left
behind.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import traceback
from contextlib import contextmanager

import numpy as np

from .engine import Engine, WorkerError, WorkerLost

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _worker_main(conn, index: int) -> None:
    """A worker's whole life: build the replica, then answer requests until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send = lambda msg: conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: E731
    failed = None                                   # a traceback from an "update" (it has no reply)
    try:
        setup, job, snapshot, share = pickle.loads(conn.recv_bytes())
        if setup is not None:
            setup()
        replica = job()
        replica.restore(snapshot)
        send(("ok", 0, os.getpid()))
        while True:
            op, seq, arg = pickle.loads(conn.recv_bytes())
            if op == "stop":
                return
            try:
                if failed is not None:
                    raise WorkerError(failed)
                if op == "update":
                    replica.update(arg)
                    continue
                if op == "forward":
                    digest = replica.digest()
                    reply = (np.concatenate([replica.forward(c) for c in share]), digest, time.process_time())
                elif op == "carried":
                    reply = (replica.carried(share), replica.digest())
                else:
                    raise ValueError(f"unknown request {op!r}")
                send(("ok", seq, reply))
            except Exception:
                failed = failed or traceback.format_exc()
                if op != "update":
                    send(("error", seq, failed))
    except (EOFError, OSError, KeyboardInterrupt):
        return                                      # the coordinator is gone: nothing to answer
    except Exception:
        try:
            send(("error", -1, traceback.format_exc()))
        except OSError:
            pass


@contextmanager
def _environ(values: dict):
    """Set environment variables for the children started inside the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _no_sigint():
    """Hold SIGINT back (delivered when the block ends) while a message is read or written."""
    main = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def _sigint_ignored():
    """Start children with SIGINT ignored: the disposition survives exec, so a Ctrl-C that reaches
    the process group while a spawned worker is still importing cannot kill it with a traceback."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


def _death(proc) -> str:
    proc.join(timeout=1.0)
    code = proc.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LocalEngine(Engine):
    """W worker processes (``spawn``, ``fork`` or ``forkserver``). ``setup``: a picklable function
    run first in every worker (``npegg train`` sets one BLAS thread there); without one, BLAS
    gets one thread through the environment unless the user set its variables."""
    name = "local"

    def __init__(self, workers: int, start_method: str = "spawn", setup=None):
        super().__init__(workers)
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method must be one of {', '.join(mp.get_all_start_methods())}; "
                             f"got {start_method!r}")
        self.start_method, self.setup = start_method, setup
        self.procs, self.conns, self.seq = [], [], 0

    # -- messages ------------------------------------------------------------------------------
    # Every request carries a sequence number that its reply echoes, so a reply still owed to a
    # request that Ctrl-C interrupted is recognised and dropped. SIGINT is held back while bytes
    # are moving (``_no_sigint``), so an interrupt never leaves half a message in a pipe.
    def _send(self, w: int, op: str, arg=None) -> int:
        self.seq += 1
        data = pickle.dumps((op, self.seq, arg), protocol=pickle.HIGHEST_PROTOCOL)
        self.bytes_down[w] += len(data)
        try:
            with _no_sigint():
                self.conns[w].send_bytes(data)
        except (BrokenPipeError, OSError):
            raise self._lost(w) from None
        return self.seq

    def _lost(self, w: int) -> WorkerLost:
        return WorkerLost(f"worker {w} (pid {self.procs[w].pid}) {_death(self.procs[w])}", w)

    def _recv(self, w: int, seq: int):
        """The reply to request ``seq`` from worker w (older replies are read and dropped)."""
        conn, proc = self.conns[w], self.procs[w]
        while True:
            ready = mp.connection.wait([conn, proc.sentinel])
            if conn not in ready:
                if proc.sentinel in ready and not conn.poll():
                    raise self._lost(w)
                continue
            try:
                with _no_sigint():
                    data = conn.recv_bytes()
            except (EOFError, OSError):
                raise self._lost(w) from None
            self.bytes_up[w] += len(data)
            status, got, value = pickle.loads(data)
            if status == "error":
                raise WorkerError(f"worker {w} (pid {proc.pid}) raised:\n{value}")
            if got == seq:
                return value

    def _ask_all(self, op: str) -> list:
        seqs = [self._send(w, op) for w in range(self.workers)]
        return [self._recv(w, seq) for w, seq in enumerate(seqs)]

    # -- engine --------------------------------------------------------------------------------
    def start(self, job, snapshot, shares, master=None) -> None:
        ctx = mp.get_context(self.start_method)
        env = {k: "1" for k in _BLAS_ENV if k not in os.environ}
        with _environ(env), _sigint_ignored():
            for w in range(self.workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, w), name=f"npegg-worker-{w}", daemon=True)
                proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
        try:
            for w in range(self.workers):
                data = pickle.dumps((self.setup, job, snapshot, shares[w]), protocol=pickle.HIGHEST_PROTOCOL)
                self.bytes_down[w] += len(data)
                self.conns[w].send_bytes(data)
            for w in range(self.workers):
                self._recv(w, 0)
        except BaseException:
            self.close()
            raise

    def forward(self) -> list:
        replies = self._ask_all("forward")
        self.cpu_seconds = [cpu for _, _, cpu in replies]
        return [(raw, digest) for raw, digest, _ in replies]

    def update(self, raw) -> None:
        for w in range(self.workers):
            self._send(w, "update", np.asarray(raw))

    def carried(self) -> list:
        return self._ask_all("carried")

    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        """Ask every worker to stop, then terminate any that did not within a second, and reap all."""
        for conn in self.conns:
            try:
                conn.send_bytes(pickle.dumps(("stop", -1, None)))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []
