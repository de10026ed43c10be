"""Evaluating a population over several workers, with results that do not depend on how many.

``plan`` (fixed member chunks, dealt to workers), ``replica`` (what a worker holds, and the
library's replica for any model), ``engine`` (``Population``, ``SerialEngine``: the one-process
twin), ``local`` (worker processes, standard library), ``ray_engine`` (Ray actors; Ray is imported
only there), ``loop`` (``ES.train``'s loop). Nothing here imports ``npegg.program``.
"""
from .engine import (Engine, Population, SerialEngine, WorkerDiverged, WorkerError, WorkerLost,  # noqa: F401
                     STOP_SIGNALS, make_engine, signals_held)
from .plan import chunk_size, deal, member_chunks, usable_cores  # noqa: F401
from .replica import ESJob, ESReplica, tree_digest  # noqa: F401
