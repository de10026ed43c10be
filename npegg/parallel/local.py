"""``LocalEngine``: worker processes on this machine, standard library only.

Each worker is a ``multiprocessing`` process (``spawn`` by default: the same on Linux, macOS and
Windows, and nothing inherited from the coordinator's threads) joined to the coordinator by one
pipe. Messages are pickled by hand (``send_bytes``) so the bytes that cross can be counted.

Liveness. The coordinator never reads or writes a pipe itself: per worker, one thread writes the
requests queued for it and another reads its messages into a queue, and the coordinator waits on
that queue a second at a time, so a Ctrl-C is always seen and no message is ever cut in half.
A worker that owes a reply (building its replica, or computing a request) sends a heartbeat
every ``beat`` = min(1 s, silence / 4) from a thread of its own. A worker is *lost*
(``WorkerLost``) when

    its process ends or its pipe closes                          noticed within a second
    it owes a reply and nothing came from it for ``silence`` s    a hung worker (SIGSTOP, a
                                                                  deadlock, a frozen machine)

(``start_timeout`` instead of ``silence`` while it starts, which includes importing NumPy). So a
hung worker is noticed within ``silence`` + 1 s (default 30 s) and is then handled as a dead one:
``close`` kills it (SIGKILL reaches a stopped process too). Heartbeats (about 40 bytes a second
while a worker computes) are not counted in ``bytes_up``.

A worker whose parent disappears sees its pipe close and exits. Workers ignore SIGINT, SIGTERM and
SIGHUP: Ctrl-C reaches the whole process group (and ``timeout``, systemd and Slurm signal every
process), and it is the coordinator that decides what happens (save, then ``close``), so no worker
is left behind. A worker is spawned with those signals blocked (``_spawning``): one that arrives
while it starts waits in the kernel until the worker has set them to be ignored, and one that
reaches the coordinator meanwhile is delivered to it once the spawn is over, never lost.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from contextlib import contextmanager

import numpy as np

from .engine import STOP_SIGNALS, Engine, WorkerError, WorkerLost, signals_held

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BEAT = 1.0                                          # seconds between a busy worker's heartbeats
_BEAT_MSG = ("beat", -1, None)


def _worker_main(conn, index: int, beat: float = BEAT) -> None:
    """A worker's whole life: build the replica, then answer requests until "stop" or EOF.
    A thread sends a heartbeat every ``beat`` seconds while the worker owes a reply."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)                # this drops any that came while we started (_spawning)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    lock, busy = threading.Lock(), threading.Event()

    def send(msg):
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with lock:                                  # the heartbeat thread writes to the same pipe
            conn.send_bytes(data)

    def heartbeat():
        while True:
            time.sleep(beat)
            if busy.is_set():
                try:
                    send(_BEAT_MSG)
                except OSError:
                    return

    busy.set()                                      # building the replica: a reply is owed
    threading.Thread(target=heartbeat, name="npegg-heartbeat", daemon=True).start()
    failed = None                                   # a traceback from an "update" (it has no reply)
    try:
        setup, job, snapshot, share = pickle.loads(conn.recv_bytes())
        if setup is not None:
            setup()
        replica = job()
        replica.restore(snapshot)
        send(("ok", 0, os.getpid()))
        busy.clear()
        while True:
            op, seq, arg = pickle.loads(conn.recv_bytes())
            busy.set()
            if op == "stop":
                return
            try:
                if failed is not None:
                    raise WorkerError(failed)
                if op == "update":
                    replica.update(arg)
                    busy.clear()
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
            busy.clear()
    except (EOFError, OSError, KeyboardInterrupt):
        return                                      # the coordinator is gone: nothing to answer
    except Exception:
        try:
            send(("error", -1, traceback.format_exc()))
        except OSError:
            pass


class _Link:
    """The coordinator's end of one worker's pipe: a writer thread and a reader thread, so the
    coordinator only ever puts bytes in ``outbox`` and takes messages from ``inbox``.

    ``inbox`` holds (bytes, message) for every reply, and None once the pipe has closed;
    ``heard`` is when anything (a reply or a heartbeat) last came, ``asked`` when the last
    request was queued (the silence clock runs from the later of the two)."""

    def __init__(self, conn, proc):
        self.conn, self.proc = conn, proc
        self.inbox, self.outbox = queue.SimpleQueue(), queue.SimpleQueue()
        self.heard = self.asked = time.monotonic()
        self.threads = [threading.Thread(target=self._read, name=f"npegg-read-{proc.name}", daemon=True),
                        threading.Thread(target=self._write, name=f"npegg-write-{proc.name}", daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self):
        try:
            while True:
                data = self.conn.recv_bytes()
                self.heard = time.monotonic()
                msg = pickle.loads(data)
                if msg != _BEAT_MSG:
                    self.inbox.put((len(data), msg))
        except (EOFError, OSError, pickle.UnpicklingError):
            self.inbox.put(None)

    def _write(self):
        while True:
            data = self.outbox.get()
            if data is None:
                return
            try:
                self.conn.send_bytes(data)
            except OSError:
                return                              # the worker is gone: the reader sees the pipe close

    def put(self, data: bytes) -> None:
        self.asked = time.monotonic()
        self.outbox.put(data)

    def silent(self) -> float:
        """Seconds since the worker was last heard from or asked, whichever is later."""
        return time.monotonic() - max(self.heard, self.asked)


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
def _spawning(tracker: bool):
    """Around ``proc.start()``: a stop signal that comes meanwhile neither kills the new worker (with a
    traceback, while it imports) nor is lost to the coordinator.

    The quirk: the spawning thread *blocks* the stop signals rather than ignoring them. An ignored
    signal is discarded; a blocked one waits in the kernel, and the mask is inherited through fork
    and exec. So the worker starts with them blocked, and one sent to it waits until ``_worker_main``
    has set them to SIG_IGN (which discards it) and unblocked them. One sent to the coordinator waits
    until the mask is restored, or is taken by another of its threads; either way it reaches the
    holding handler of ``signals_held`` (no Python handler runs halfway through a spawn) and is
    delivered to the coordinator's own handler at the end of the block. multiprocessing's resource
    tracker unblocks SIGINT and SIGTERM in the calling thread when it starts itself, which would let
    them through to the worker, so with ``tracker`` (spawn, forkserver) it is started before the
    block. Without ``pthread_sigmask`` (Windows) the signals are ignored around the spawn instead:
    the worker is protected, and a signal to the coordinator in those milliseconds is lost."""
    if not hasattr(signal, "pthread_sigmask"):
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS} if main else {}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return
    if tracker:
        from multiprocessing import resource_tracker
        resource_tracker.ensure_running()
    with signals_held():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)     # pending ones now reach the holding handler


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


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class LocalEngine(Engine):
    """W worker processes (``spawn``, ``fork`` or ``forkserver``). ``setup``: a picklable function
    run first in every worker (``npegg train`` sets one BLAS thread there); without one, BLAS
    gets one thread through the environment unless the user set its variables. A worker silent
    for ``silence`` seconds while it owes a reply (``start_timeout`` while it starts) is lost."""
    name = "local"

    def __init__(self, workers: int, start_method: str = "spawn", setup=None, silence: float = 30.0,
                 start_timeout: float = 120.0):
        super().__init__(workers)
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method must be one of {', '.join(mp.get_all_start_methods())}; "
                             f"got {start_method!r}")
        self.silence, self.start_timeout = _seconds("silence", silence), _seconds("start_timeout", start_timeout)
        self.beat = min(BEAT, self.silence / 4)
        self.start_method, self.setup = start_method, setup
        self.procs, self.links, self.seq, self.started = [], [], 0, False
        self.ahead = None               # the sequence numbers of a forward asked for ahead (``prefetch``)
        self.early = None               # its replies, when another request had to read past them

    # -- messages ------------------------------------------------------------------------------
    # Every request carries a sequence number that its reply echoes, so a reply still owed to a
    # request that Ctrl-C interrupted is recognised and dropped.
    def _send(self, w: int, op: str, arg=None) -> int:
        self.seq += 1
        data = pickle.dumps((op, self.seq, arg), protocol=pickle.HIGHEST_PROTOCOL)
        self.bytes_down[w] += len(data)
        self.links[w].put(data)
        return self.seq

    def _lost(self, w: int) -> WorkerLost:
        return WorkerLost(f"worker {w} (pid {self.procs[w].pid}) {_death(self.procs[w])}", w)

    def _recv(self, w: int, seq: int):
        """The reply to request ``seq`` from worker w (older replies are read and dropped)."""
        link, proc = self.links[w], self.procs[w]
        limit = self.silence if self.started else self.start_timeout
        while True:
            try:
                item = link.inbox.get(timeout=self.beat)
            except queue.Empty:
                if not proc.is_alive():
                    raise self._lost(w) from None
                if link.silent() > limit:
                    raise WorkerLost(f"worker {w} (pid {proc.pid}) stopped answering: nothing from it for "
                                     f"{link.silent():.0f} s (the limit is {limit:g} s)", w) from None
                continue
            if item is None:
                raise self._lost(w)
            size, (status, got, value) = item
            self.bytes_up[w] += size
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
        try:
            with _environ(env):
                for w in range(self.workers):
                    parent, child = ctx.Pipe()
                    proc = ctx.Process(target=_worker_main, args=(child, w, self.beat), name=f"npegg-worker-{w}", daemon=True)
                    with _spawning(tracker=self.start_method != "fork"):   # a stop signal meanwhile comes
                        proc.start()                                       # at the end of the block, when
                        child.close()                                      # close() knows this worker
                        self.procs.append(proc)
                        self.links.append(_Link(parent, proc))
            for w in range(self.workers):
                data = pickle.dumps((self.setup, job, snapshot, shares[w]), protocol=pickle.HIGHEST_PROTOCOL)
                self.bytes_down[w] += len(data)
                self.links[w].put(data)
            for w in range(self.workers):
                self._recv(w, 0)
            self.started = True
        except BaseException:
            self.close()
            raise

    def prefetch(self) -> None:
        """Ask every worker for the next forward now (after "update"): it runs while the coordinator
        applies its own update, validates or prints. ``forward`` collects it."""
        if self.ahead is None and self.early is None:
            self.ahead = [self._send(w, "forward") for w in range(self.workers)]

    def _collect_ahead(self) -> None:
        """Read the replies of a forward asked for ahead, to be returned by the next ``forward``
        (a worker answers in order, so a later request's reply comes after them)."""
        if self.ahead is not None:
            seqs, self.ahead = self.ahead, None
            self.early = [self._recv(w, seq) for w, seq in enumerate(seqs)]

    def forward(self) -> list:
        self._collect_ahead()
        replies, self.early = self.early or self._ask_all("forward"), None
        self.cpu_seconds = [cpu for _, _, cpu in replies]
        return [(raw, digest) for raw, digest, _ in replies]

    def update(self, raw) -> None:
        for w in range(self.workers):
            self._send(w, "update", np.asarray(raw))

    def carried(self) -> list:
        self._collect_ahead()
        return self._ask_all("carried")

    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        """Ask every worker to stop, then terminate any that did not within a second, kill any
        still there (a stopped process ignores SIGTERM until it continues), and reap all."""
        for link in self.links:
            link.outbox.put(pickle.dumps(("stop", -1, None)))
            link.outbox.put(None)
        for proc in self.procs:
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for link in self.links:                     # the pipes are closed at the workers' end now
            for t in link.threads:
                t.join(timeout=1.0)
            link.conn.close()
        self.procs, self.links, self.started = [], [], False
