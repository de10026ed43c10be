"""A hung worker (SIGSTOP: alive but silent) is ``WorkerLost`` after ``silence`` seconds, for
worker processes and for Ray actors; a worker that is slow but alive is not. Real processes, real
signals, a real local Ray."""
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npegg.es import ES
from npegg.models import MLP
from npegg.parallel import ESJob, ESReplica, Population, WorkerLost
from npegg.parallel.local import LocalEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from regression import SquaredError  # noqa: E402


class Slow(SquaredError):
    """Takes ``pause`` seconds per call at epoch 1 (longer than the silence limit)."""

    def __init__(self, x, y, batch, pause):
        super().__init__(x, y, batch)
        self.pause = pause

    def __call__(self, es, state, members):
        if state.epoch == 1:
            time.sleep(self.pause)
        return super().__call__(es, state, members)


def _population(engine, fitness=None):
    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[8]), pop_size=64, group_size=8, seed=0,
                          sigma=0.1, lr=0.1)
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    fitness = fitness or SquaredError(x, x, 8)
    return Population(ESReplica(es, state, fitness), ESJob(es, state, fitness), engine, 64, 16)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stopped_worker_process_is_lost_after_the_silence_limit():
    engine = LocalEngine(2, silence=2.0)
    pop = _population(engine)
    try:
        pop.update(pop.scores())
        pid = engine.pids()[1]
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(WorkerLost, match=rf"worker 1 \(pid {pid}\) stopped answering: .*the limit is 2 s") as e:
            for _ in range(2):          # the next forward was asked for ahead and may be answered already
                pop.update(pop.scores())
        assert e.value.worker == 1
    finally:
        pop.close()
    assert not _alive(pid)                              # close killed the stopped worker and reaped it


def test_a_worker_slower_than_the_limit_but_alive_is_waited_for():
    """Each call sleeps 3 s at epoch 1 against a 1 s limit: the heartbeats keep the workers in."""
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    engine = LocalEngine(2, silence=1.0)
    pop = _population(engine, Slow(x, x, 8, pause=3.0))
    try:
        pop.update(pop.scores())
        raw = pop.scores()                              # epoch 1: slow
        assert raw.shape == (64,) and np.all(np.isfinite(raw))
    finally:
        pop.close()


def test_the_silence_limit_is_checked():
    for bad in (0, -1.0, float("nan"), "30", True):
        with pytest.raises(ValueError, match="silence must be a number of seconds > 0"):
            LocalEngine(2, silence=bad)


@pytest.fixture
def ray_by_value(ray_session):
    """Ray actors import modules by name; ``regression`` and this test module travel by value."""
    import regression
    for module in (regression, sys.modules[__name__]):
        ray_session.cloudpickle.register_pickle_by_value(module)
    return ray_session


def test_a_stopped_ray_actor_is_lost_after_the_silence_limit(ray_by_value):
    from npegg.parallel.ray_engine import RayEngine
    engine = RayEngine(2, silence=2.0)
    pop = _population(engine)
    pid = None
    try:
        pop.update(pop.scores())
        pid = engine.pids()[1]
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(WorkerLost, match=rf"worker 1 \(Ray actor, pid {pid}\) stopped answering: .*limit is 2 s"):
            pop.scores()
    finally:
        pop.close()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGCONT)                # let Ray's kill land if it was held


def test_a_slow_ray_actor_is_waited_for(ray_by_value):
    """The pings run beside the slow request (the "beat" concurrency group) and keep it in."""
    from npegg.parallel.ray_engine import RayEngine
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    pop = _population(RayEngine(2, silence=2.0), Slow(x, x, 8, pause=5.0))
    try:
        pop.update(pop.scores())
        assert np.all(np.isfinite(pop.scores()))
    finally:
        pop.close()


class SlowJob(ESJob):
    """Builds its replica 2 s late, so that a test can stop the worker before its first answer."""

    def __call__(self):
        time.sleep(2.0)
        return super().__call__()


def test_a_worker_stopped_while_starting_is_lost_after_the_start_timeout():
    import threading
    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[8]), pop_size=64, group_size=8, seed=0,
                          sigma=0.1, lr=0.1)
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    fitness = SquaredError(x, x, 8)
    engine, stopped = LocalEngine(2, silence=30.0, start_timeout=3.0), []

    def stop_worker_0():
        while not engine.procs:
            time.sleep(0.01)
        time.sleep(0.5)                                 # spawned, not yet answered (the job sleeps 2 s)
        stopped.append(engine.procs[0].pid)
        os.kill(stopped[0], signal.SIGSTOP)
    t = threading.Thread(target=stop_worker_0)
    t.start()
    with pytest.raises(WorkerLost, match=r"worker 0 \(pid \d+\) stopped answering: .*the limit is 3 s"):
        Population(ESReplica(es, state, fitness), SlowJob(es, state, fitness), engine, 64, 16)
    t.join()
    assert engine.procs == [] and not _alive(stopped[0])     # start closed the engine: the stopped worker killed


def test_a_forward_asked_for_ahead_is_collected_by_carried_and_forward_alike():
    """After an update the local engine asks every worker for the next forward at once (prefetch).
    A ``carried`` request meanwhile reads past it and keeps its replies; the next ``scores`` returns
    them: the same raw scores, epoch by epoch, as the one-process twin, with a sync between epochs."""
    from npegg.parallel.engine import SerialEngine
    local, serial = _population(LocalEngine(2)), _population(SerialEngine())
    try:
        for epoch in range(3):
            got, want = local.scores(), serial.scores()
            assert np.array_equal(got, want), epoch
            local.update(got)
            serial.update(want)
            assert local.engine.ahead is not None          # the next forward is already on its way
            local.sync_carried()                            # reads past it; its replies are kept
            assert local.engine.ahead is None and local.engine.early is not None
    finally:
        local.close()
