"""``RayEngine``: the member shards in Ray actors, on a cluster or on a local Ray instance.

Ray is imported here only, when this engine is asked for. The cluster is Ray's own convention:
``RAY_ADDRESS`` when set (``ray start --head`` on one machine, ``ray start --address=HOST:6379``
on the others), otherwise a local instance with as many CPUs as this process may use; an
instance this engine started is shut down by ``close``. Each actor asks for one CPU and holds one
replica (``replica.py``); calls from the coordinator to one actor run in the order they were made,
so "update" needs no reply. A dead actor (``ray.kill``, a lost node) surfaces as ``WorkerLost``;
an exception inside an actor as ``WorkerError`` with its traceback.

A hung actor (SIGSTOP, a deadlock, a frozen node) would keep a call waiting for ever, so while
the coordinator waits for replies it pings every actor that still owes one each ``beat`` =
min(1 s, silence / 4), through a method in a concurrency group of its own (``"beat"``: it runs
on another thread, beside the request, while requests keep their order in the default group).
An actor that answers neither its request nor a ping for ``silence`` seconds (default 30) is
lost: ``WorkerLost``, within ``silence`` + ``beat`` seconds of its last sign of life.
"""
from __future__ import annotations

import os
import pickle
import re
import socket
import threading
import time

import numpy as np

from .engine import Engine, WorkerError, WorkerLost
from .plan import usable_cores

BEAT = 1.0                          # seconds between pings to an actor that owes a reply


class _ReplicaActor:
    """One worker: built from (setup, job, snapshot, share), then forward / update / carried.

    With a concurrency group the requests run on a thread of Ray's, not the one ``__init__`` ran
    on, so ``setup`` runs again there before the first request (NumPy's error state is per thread).
    """

    def __init__(self, setup, job, snapshot, share):
        if setup is not None:
            setup()
        self.setup, self.setup_thread = setup, threading.get_ident()
        self.replica, self.share = job(), share
        self.replica.restore(snapshot)

    def _here(self):
        if self.setup is not None and self.setup_thread != threading.get_ident():
            self.setup()
            self.setup_thread = threading.get_ident()

    def pid(self) -> int:
        return os.getpid()

    def alive(self) -> bool:
        """The ping (run in the "beat" concurrency group, beside a long request)."""
        return True

    def forward(self):
        self._here()
        digest = self.replica.digest()
        return np.concatenate([self.replica.forward(c) for c in self.share]), digest, time.process_time()

    def update(self, raw) -> None:
        self._here()
        self.replica.update(raw)

    def carried(self):
        self._here()
        return self.replica.carried(self.share), self.replica.digest()


#: seconds to wait for a TCP connection to RAY_ADDRESS before calling the cluster unreachable
CONNECT_TIMEOUT = 10.0


def _unreachable(address: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why RAY_ADDRESS's HOST:PORT (also ``ray://HOST:PORT``) takes no TCP connection within
    ``timeout`` seconds, or None when it does, or when the address is not of that form ("auto",
    "local": Ray resolves those itself, and reports its own errors for anything malformed)."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]\s/]+?)\]?:([0-9]+)", address.strip())
    if m is None:
        return None
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        return f"port {port} is not between 1 and 65535"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"no answer from {host} port {port} within {timeout:g} s" if isinstance(e, TimeoutError) \
            else f"{host} port {port}: {e.strerror or e}"
    return None


def _first_lines(e, n: int = 12) -> str:
    lines = str(e).strip().splitlines()
    return "\n".join(lines[:n] + (["…"] if len(lines) > n else []))


def _size(x) -> int:
    """Bytes of x as pickled (what Ray's serializer sends is within a few bytes of this for arrays)."""
    return len(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL))


class RayEngine(Engine):
    """W Ray actors, one CPU each, each holding one replica and a fixed share of member chunks.

    ``RAY_ADDRESS`` names the cluster; without it a local instance is started (and shut down by
    ``close``). Per epoch an actor receives the P raw scores of the last epoch (for its update) and
    returns its share's raw scores, a digest of its replica and its CPU time.
    """
    name = "ray"

    def __init__(self, workers: int, setup=None, ready_timeout: float = 120.0, silence: float = 30.0):
        super().__init__(workers)
        from .local import _seconds
        self.setup, self.ready_timeout = setup, _seconds("ready_timeout", ready_timeout)
        self.silence = _seconds("silence", silence)
        self.beat = min(BEAT, self.silence / 4)
        self.actors, self.owns_ray, self._pids = [], False, []

    def _ray(self):
        import ray
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS") or None
            silent = _unreachable(address) if address else None
            if silent:              # ray.init would retry such an address for many minutes, printing nothing of ours
                raise WorkerError(f"--engine ray: could not reach the cluster at RAY_ADDRESS={address}: {silent}\n"
                                  f"(start it with  ray start --head  on that machine, or unset RAY_ADDRESS "
                                  f"for a local Ray)")
            try:
                ray.init(address=address, num_cpus=None if address else usable_cores(), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except Exception as e:      # Ray raises ConnectionError, ValueError, RuntimeError… for a bad cluster
                where = f"the cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
                raise WorkerError(f"--engine ray: could not start or reach {where}: {type(e).__name__}: "
                                  f"{_first_lines(e, 3)}" + ("\n(start it with  ray start --head  on that machine, "
                                  "or unset RAY_ADDRESS for a local Ray)" if address else "")) from None
            self.owns_ray = True
        return ray

    def _get(self, ray, ref, w: int):
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise WorkerLost(f"worker {w} (Ray actor, pid {self._pid(w)}) was lost: {_first_lines(e)}", w) from None
        except ray.exceptions.RayTaskError as e:
            raise WorkerError(f"worker {w} (Ray actor) raised:\n{e}") from None

    def _pid(self, w: int):
        return self._pids[w] if w < len(self._pids) else "?"

    def _call(self, refs: list) -> list:
        """ray.get of one reference per actor, a second at a time, pinging the actors still owing a
        reply; ``WorkerLost`` for an actor silent for ``silence`` seconds."""
        ray = self._ray()
        out, owed = [None] * len(refs), dict(enumerate(refs))
        heard, pings = [time.monotonic()] * len(refs), {}
        while owed:
            ready, _ = ray.wait(list(owed.values()), num_returns=len(owed), timeout=self.beat)
            for w in [w for w, ref in owed.items() if ref in ready]:
                out[w] = self._get(ray, owed.pop(w), w)
            for w in owed:
                ping = pings.get(w)
                if ping is not None and ray.wait([ping], timeout=0)[0]:
                    self._get(ray, ping, w)                         # a dead actor's ping raises WorkerLost
                    heard[w], ping = time.monotonic(), None
                if ping is None:
                    pings[w] = self.actors[w].alive.options(concurrency_group="beat").remote()
                silent = time.monotonic() - heard[w]
                if silent > self.silence:
                    raise WorkerLost(f"worker {w} (Ray actor, pid {self._pid(w)}) stopped answering: nothing from "
                                     f"it for {silent:.0f} s (the limit is {self.silence:g} s)", w)
        return out

    def start(self, job, snapshot, shares, master=None) -> None:
        ray = self._ray()
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < self.workers:
            self.close()
            raise WorkerError(f"--workers {self.workers}: the Ray cluster has {cpus:g} CPUs; "
                             f"start more nodes or ask for fewer workers")
        actor = ray.remote(num_cpus=1, concurrency_groups={"beat": 1})(_ReplicaActor)
        payload = _size((job, snapshot))
        try:
            for w in range(self.workers):
                self.actors.append(actor.remote(self.setup, job, snapshot, shares[w]))
                self.bytes_down[w] += payload + _size(shares[w])
            refs = [a.pid.remote() for a in self.actors]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.ready_timeout)
            if len(ready) < len(refs):
                raise WorkerError(f"{len(refs) - len(ready)} of {len(refs)} Ray actors did not start within "
                                  f"{self.ready_timeout:g} s (is the cluster short of CPUs?)")
            self._pids = [self._get(ray, r, w) for w, r in enumerate(refs)]
        except BaseException:
            self.close()
            raise

    def forward(self) -> list:
        replies = self._call([a.forward.remote() for a in self.actors])
        for w, reply in enumerate(replies):
            self.bytes_down[w] += _size(("forward", None))
            self.bytes_up[w] += _size(("ok", reply))
        self.cpu_seconds = [cpu for _, _, cpu in replies]
        return [(raw, digest) for raw, digest, _ in replies]

    def update(self, raw) -> None:
        raw = np.asarray(raw)
        for w, a in enumerate(self.actors):
            a.update.remote(raw)
            self.bytes_down[w] += _size(("update", raw))

    def carried(self) -> list:
        return self._call([a.carried.remote() for a in self.actors])

    def pids(self) -> list:
        return list(self._pids)

    def close(self) -> None:
        """Kill every actor (their processes end), and shut down a Ray instance this engine started."""
        if not self.actors and not self.owns_ray:
            return
        import ray
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self.owns_ray:
            ray.shutdown()
            self.owns_ray = False
