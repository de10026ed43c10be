"""``npegg train`` over workers: the program's replicas and ``ParallelRun``, which drives them.

A replica (protocol in ``npegg.parallel.replica``) wraps a ``FloatRun`` or ``IntRun``. Each worker
builds its own run from the config and the training bytes (sent once), then keeps, for the
members it owns, their data streams' windows and their hidden states carried across epochs;
the coordinator's run (the *master*) holds parameters, optimizer, data position and, after
``sync_carried``, every member's hidden state, so validation, sampling and checkpoints read it
as before. One epoch::

    windows = reader.next(pos)                  every replica reads the same windows (cheap)
    raw[c]  = forward of chunk c                on the worker owning c, chunks of fixed size
    θ, pos, hidden ← update(raw (P,))           in every replica: the same bits

A lost worker (killed process, dead Ray actor) does not stop the run: ``ParallelRun`` restores
the master to the last state it could rebuild (the last checkpoint, or the start), restarts the
remaining workers, replays the epochs since then, and goes on; the replay is the same
computation, so the run's bits are those of an uninterrupted one. A hung worker (stopped, deadlocked)
counts as lost once it has been silent for ``NPEGG_WORKER_TIMEOUT`` seconds (default 30) while it
owed a reply (while starting, 120 s or that if larger), whether during an epoch, while the workers
start, or while a checkpoint gathers the workers' states.
"""
from __future__ import annotations

import copy
import os
import re
from typing import Callable

import numpy as np

from ..parallel import Population, WorkerLost, chunk_size, make_engine, member_chunks, tree_digest, usable_cores
from .data import BatchReader
from .runs.base_run import Diverged
from .evaluate import LN2


class _RunReplica:
    """What ``FloatReplica`` and ``IntReplica`` share: windows, pending hidden states, carried rows."""

    def __init__(self, run):
        self.run, self.pending = run, None                      # pending: (windows, next data state, hidden)

    def _begin(self):
        if self.pending is None:
            windows, data_state = self.run.reader.next(self.run.data_state)          # (P, T+1) uint8
            self.pending = (windows, data_state, self.run.hidden.copy())             # (P, L, D)
        return self.pending

    def _commit(self):
        """Advance the data position and commit the new hidden states (when this replica computed them)."""
        if self.pending is None:
            self.run.data_state = self.run.reader.next(self.run.data_state)[1]
        else:
            (_, self.run.data_state, self.run.hidden), self.pending = self.pending, None

    def snapshot(self):
        return self.run.checkpoint_trees()

    def restore(self, snapshot) -> None:
        self.pending = None
        self.run.restore(*copy.deepcopy(snapshot))

    def carried(self, members) -> dict:
        return {"hidden": np.concatenate([self.run.hidden[c] for c in members])}

    def set_carried(self, members, tree) -> None:
        lo = 0
        for c in members:
            n = c.stop - c.start
            self.run.hidden[c] = tree["hidden"][lo:lo + n]
            lo += n


class FloatReplica(_RunReplica):
    """Replica of a ``FloatRun``: raw = Σₜ log p (nats, float64); update = ``ES.step``."""

    def forward(self, members: slice) -> np.ndarray:
        run = self.run
        windows, _, hidden = self._begin()
        ids = np.arange(run.cfg.pop_size)[members]                                   # (n,)
        ll, hidden[members] = run.es.forward_members(run.state, ids, windows[members, :-1], run.hidden[members],
                                                     targets=windows[members, 1:])
        return ll.sum(axis=1, dtype=np.float64)                                      # (n,) nats

    def update(self, raw) -> None:
        windows = self.pending[0] if self.pending else self.run.reader.next(self.run.data_state)[0]
        self.run.state = self.run.es.step(self.run.state, np.asarray(raw, np.float64), self.run.rows_seen(windows))
        self._commit()

    def digest(self) -> str:
        s = self.run.state
        return tree_digest(s.params, s.noiser_params, np.int64(s.epoch), self.run.data_state)

    def train_bpb(self, raw) -> float:
        return float(-raw.mean() / (self.run.cfg.tokens_per_update * LN2))


class IntReplica(_RunReplica):
    """Replica of an ``IntRun``: raw = Σₜ ll (int32, 1/16 bit); update = Q-EGGROLL's ±1 step."""

    def forward(self, members: slice) -> np.ndarray:
        from ..models.egg import generate
        from ..noiser.qeggroll import QEggRoll
        run = self.run
        windows, _, hidden = self._begin()
        ids = np.arange(run.cfg.pop_size)[members]
        out = generate(QEggRoll, run.frozen_noiser, run.noiser_params, None, run.params, run.es_tree_key,
                       (run.epoch, ids), windows[members, :-1], windows[members, 1:], run.hidden[members])
        hidden[members] = out.final_state
        return out.loss_sum                                                          # (n,) int32

    def update(self, raw) -> None:
        from ..noiser.qeggroll import QEggRoll
        run, p = self.run, self.run.cfg.pop_size
        raw = np.asarray(raw, np.int32)
        fitness = QEggRoll.convert_fitnesses(run.frozen_noiser, run.noiser_params, raw)
        iterinfos = (np.full(p, run.epoch, np.int32), np.arange(p))
        run.noiser_params, run.params = QEggRoll.do_updates(run.frozen_noiser, run.noiser_params, run.params,
                                                            run.es_tree_key, fitness, iterinfos, run.es_map)
        run.epoch += 1
        self._commit()

    def digest(self) -> str:
        r = self.run
        return tree_digest(r.params, r.noiser_params, np.int64(r.epoch), r.data_state)

    def train_bpb(self, raw) -> float:
        return float(-np.asarray(raw).astype(np.float64).mean() / 16 / self.run.cfg.tokens_per_update)


def replica_for(run):
    return IntReplica(run) if run.cfg.mode == "int" else FloatReplica(run)


class ProgramJob:
    """Builds a worker's replica: the run from the config, reading the training bytes (sent once)."""

    def __init__(self, cfg, train_bytes: np.ndarray):
        self.cfg, self.train = cfg, np.asarray(train_bytes, np.uint8)

    def __call__(self):
        from .runs import make_run
        run = make_run(self.cfg, None)
        run.reader = BatchReader(self.train, self.cfg.pop_size, self.cfg.group_size, self.cfg.tokens_per_update)
        return replica_for(run)


def worker_setup() -> None:
    """Run first in every worker: BLAS threads as in the coordinator (``blas.py``), and overflow
    left to the loop's divergence check rather than printed as NumPy warnings (as ``train_command``)."""
    from .blas import default_blas_threads
    default_blas_threads()
    np.seterr(over="ignore", invalid="ignore")


def program_chunk(cfg) -> int:
    """Members per forward call: 64 for the minGRU (its forward is cache-blocked anyway); 256 for
    the egg cell and int mode, whose loop over time prefers many members per step."""
    return chunk_size(cfg.pop_size, cfg.group_size, 64 if (cfg.mode == "float" and cfg.cell == "mingru") else 256)


WORKER_TIMEOUT = 30.0


def worker_timeout() -> float:
    """Seconds a worker may stay silent while it owes a reply before it counts as lost:
    ``NPEGG_WORKER_TIMEOUT`` (a positive number), else 30. ValueError naming the variable."""
    value = os.environ.get("NPEGG_WORKER_TIMEOUT", "").strip()
    if not value:
        return WORKER_TIMEOUT
    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", value) or not 0 < float(value) <= 86400:
        raise ValueError(f"NPEGG_WORKER_TIMEOUT must be a number of seconds between 0 and 86400 "
                         f"(how long a silent worker is waited for), got {value!r}")
    return float(value)


def check_workers(cfg, workers) -> int:
    """The worker count for ``--workers`` (None: every core this process may use, at most one per
    chunk); raises ValueError naming the flag when it cannot work (or NPEGG_WORKER_TIMEOUT is bad)."""
    worker_timeout()
    n_chunks = len(member_chunks(cfg.pop_size, program_chunk(cfg)))
    if workers is None:
        return min(usable_cores(), n_chunks)
    if not 1 <= workers <= n_chunks:
        raise ValueError(f"--workers: must be between 1 and {n_chunks} for --pop-size {cfg.pop_size} "
                         f"(members are evaluated in {n_chunks} chunks of {program_chunk(cfg)}); got {workers}")
    return int(workers)


class ParallelRun:
    """A run whose population is evaluated by ``workers`` workers of ``engine`` ("local" or "ray").

    Everything but ``epoch_step`` and the checkpoint pair is the master run's own (attribute
    access passes through). ``say`` reports a lost worker and the recovery.
    """

    def __init__(self, run, train_bytes, workers=None, engine: str = "local", say: Callable = print,
                 start_method: str = "spawn"):
        self.run, self.replica = run, replica_for(run)
        self.job = ProgramJob(run.cfg, train_bytes)
        self.chunk = program_chunk(run.cfg)
        workers = check_workers(run.cfg, workers)
        self.workers, self.engine_name, self.say, self.start_method = int(workers), engine, say, start_method
        self.pop, self.saved = None, None

    def __getattr__(self, name):
        return getattr(self.__dict__["run"], name)

    @property
    def epoch(self) -> int:
        return self.run.epoch

    def _engine(self):
        options = dict(setup=worker_setup, silence=worker_timeout())
        if self.engine_name == "local":                  # starting includes importing NumPy: 120 s at least
            options.update(start_method=self.start_method, start_timeout=max(120.0, options["silence"]))
        return make_engine(self.engine_name, self.workers, **options)

    def start(self) -> None:
        """Start the workers from the master's current state (done by the first ``epoch_step``); a
        worker lost while starting (dead, or silent for 120 s) is handled as in ``epoch_step``."""
        if self.pop is None:
            if self.saved is None:
                self.saved = copy.deepcopy(self.replica.snapshot())
            try:
                self._start_workers()
            except WorkerLost as lost:
                self._recover(lost, self.run.epoch)

    def _start_workers(self) -> None:
        self.pop = Population(self.replica, self.job, self._engine(), self.cfg.pop_size, self.chunk)

    def epoch_step(self) -> float:
        """One generation over the workers; returns the population's train bpb."""
        target = self.run.epoch
        while True:
            try:
                self.start()
                raw = self.pop.scores()
                bad = int((~np.isfinite(raw)).sum())
                if bad:                                 # as FloatRun.epoch_step: stop before the update
                    raise Diverged(f"epoch {self.run.epoch + 1}: {bad} of {raw.size} members' "
                                   f"log-likelihoods are not finite")
                self.pop.update(raw)
                return self.replica.train_bpb(raw)
            except WorkerLost as lost:
                self._recover(lost, target)

    def _recover(self, lost: WorkerLost, target: int) -> None:
        """Go on with one worker fewer: rebuild the master from the last saved point and replay
        (again with one fewer if another worker is lost during the replay)."""
        while True:
            self.close()
            self.workers = max(1, self.workers - 1)
            self.replica.restore(self.saved)
            since = self.run.epoch
            self.say(f"{lost}; continuing with {self.workers} worker{'s' if self.workers > 1 else ''} "
                     f"from epoch {since} (replaying {target - since} epoch{'s' if target - since != 1 else ''})")
            try:
                self._start_workers()
                while self.run.epoch < target:
                    raw = self.pop.scores()
                    self.pop.update(raw)
                return
            except WorkerLost as again:
                lost = again

    def checkpoint_trees(self):
        """The master's trees with every member's hidden state gathered from the workers (a worker
        lost meanwhile is handled as in ``epoch_step``: the others replay up to this epoch)."""
        while self.pop is not None:
            try:
                self.pop.sync_carried()
                break
            except WorkerLost as lost:
                self._recover(lost, self.run.epoch)
        trees, scalars = self.run.checkpoint_trees()
        self.saved = copy.deepcopy((trees, scalars))
        return trees, scalars

    def restore(self, trees, scalars) -> None:
        if self.pop is not None:
            raise RuntimeError("restore a ParallelRun before its first epoch")
        self.run.restore(trees, scalars)

    def pids(self) -> list:
        return [] if self.pop is None else self.pop.engine.pids()

    def close(self) -> None:
        if self.pop is not None:
            pop, self.pop = self.pop, None
            pop.close()
