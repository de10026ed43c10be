"""What one worker holds: a *replica* of the run, and the library's replica for any model.

Every process taking part (the coordinator and each worker) holds a full replica: parameters,
optimizer state, epoch, and the per-member state carried across epochs. Workers stay in step as
in Salimans et al. (2017, Algorithm 2) and nano-egg: each one evaluates only its own members, the
coordinator gathers the P raw scores, and *every* replica applies the same update from them. The
update is the same computation on the same inputs in every process (one BLAS thread each), so the
parameters stay identical bit for bit; each forward reply carries a digest of the replica's state
so that a replica that drifted is caught at once rather than trusted. Noise never crosses: every
replica rebuilds it from (seed, leaf, epoch, member).

A replica has these methods (``ESReplica`` below, ``npegg.program.shard`` for ``npegg train``)::

    forward(members: slice) -> (n,) raw scores   this epoch's forward of those members; their carried
                                                 state advances only when ``update`` commits it
    update(raw (P,))                             the epoch's update from all raw scores; next epoch
    digest() -> str                              sha256 of everything the update changes
    snapshot() / restore(snapshot)               the whole replica, to start a worker
    carried(members: list[slice]) -> dict         carried per-member arrays, rows of those members
    set_carried(members: list[slice], tree)

A *job* is a picklable callable with no arguments that builds a replica inside a worker; with
the ``spawn`` start method it is sent by pickle, so it must name module-level classes/functions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def tree_digest(*trees) -> str:
    """sha256 over every array leaf of the trees (dict keys sorted), with dtypes and shapes."""
    h = hashlib.sha256()

    def add(x):
        if isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                add(x[k])
        elif isinstance(x, (list, tuple)):
            for v in x:
                add(v)
        elif x is not None and not callable(x):
            a = np.ascontiguousarray(x)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    for t in trees:
        add(t)
    return h.hexdigest()


class ESReplica:
    """The library's replica: an ``ES``, its ``ESState`` and a user fitness function.

    ``fitness(es, state, members) -> (n,)`` scores the members (a (n,) int array of thread ids) at
    ``state``: typically ``es.forward_members(state, members, inputs_of(members))`` and a score per
    row. It must be picklable (a module-level function or class instance) to reach a worker.
    """

    def __init__(self, es, state, fitness: Callable):
        self.es, self.state, self.fitness = es, state, fitness

    def forward(self, members: slice) -> np.ndarray:
        ids = np.arange(self.es.pop_size)[members]                                # (n,)
        raw = np.asarray(self.fitness(self.es, self.state, ids))
        if raw.shape != ids.shape:
            raise ValueError(f"fitness must return one score per member: shape ({len(ids)},), got {raw.shape}")
        return raw

    def update(self, raw) -> None:
        self.state = self.es.step(self.state, raw)

    def digest(self) -> str:
        s = self.state
        return tree_digest(s.params, s.noiser_params, np.int64(s.epoch))

    def snapshot(self):
        return self.state

    def restore(self, snapshot) -> None:
        self.state = snapshot

    def carried(self, members) -> dict:
        return {}

    def set_carried(self, members, tree) -> None:
        pass


@dataclass
class ESJob:
    """Builds an ``ESReplica`` in a worker (``ES`` pickles as the recipe that created it)."""
    es: Any
    state: Any
    fitness: Callable

    def __call__(self) -> ESReplica:
        return ESReplica(self.es, self.state, self.fitness)
