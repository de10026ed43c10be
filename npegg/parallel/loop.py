"""The library's training loop over an engine: ``ES.train`` (``npegg.es``) lands here.

    for each epoch:  raw = scores of every member (P,)      chunks spread over the workers
                     state ← es.step(state, raw)            in every replica, the same bits

With ``workers=1`` and the local engine nothing leaves this process (``SerialEngine``): the
one-process twin that any number of workers must match bit for bit.
"""
from __future__ import annotations

from ..models.base_model import check_int
from .engine import Population, make_engine
from .plan import chunk_size
from .replica import ESJob, ESReplica


def train(es, state, fitness, epochs: int, *, workers: int = 1, engine: str = "local", on_epoch=None,
          chunk: int | None = None, **engine_options):
    """See ``npegg.es.ES.train``. Returns the final ``ESState``."""
    epochs = check_int("epochs", epochs, 0)
    if not callable(fitness):
        raise ValueError(f"fitness must be callable as fitness(es, state, members), got {fitness!r}")
    group = int(es.frozen_noiser_params.get("group_size", 0))
    chunk = chunk_size(es.pop_size, group) if chunk is None else check_int("chunk", chunk, 1)
    master = ESReplica(es, state, fitness)
    eng = make_engine(engine, workers, **engine_options)
    try:
        pop = Population(master, ESJob(es, state, fitness), eng, es.pop_size, chunk)
        for _ in range(epochs):
            raw = pop.scores()
            pop.update(raw)
            if on_epoch is not None:
                on_epoch(master.state, raw)
    finally:
        eng.close()
    return master.state
