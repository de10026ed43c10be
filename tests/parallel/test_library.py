"""``ES.train`` over worker processes and Ray actors gives the one-process twin's bits."""
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from npegg.es import ES
from npegg.models import MLP
from npegg.optim import linear_schedule
from npegg.parallel import WorkerError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from regression import SquaredError, run  # noqa: E402


def _small(**kw):
    return run(epochs=4, pop_size=64, group_size=8, verbose=False, **kw)


@pytest.fixture(scope="module")
def serial():
    return _small(workers=1)


def test_es_pickles_as_its_recipe():
    """An ES sent to a worker is rebuilt from create's arguments: same params, same forward bits."""
    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[8]), pop_size=8, group_size=2, seed=3,
                          sigma=linear_schedule(1.0, 0.0, 10), lr=0.1)
    twin = pickle.loads(pickle.dumps(es))
    x = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    assert np.array_equal(es.forward(state, x), twin.forward(state, x))
    assert np.array_equal(twin.members, es.members)


def test_two_worker_processes_give_the_serial_bits(serial):
    losses, _, pred, _ = _small(workers=2)
    assert np.array_equal(losses, serial[0]) and np.array_equal(pred, serial[2])


def test_three_ray_actors_give_the_serial_bits(serial, ray_session):
    """(Ray actors import modules by name; ``regression`` is not installed, so it travels by value.)"""
    import regression
    ray_session.cloudpickle.register_pickle_by_value(regression)
    losses, _, pred, _ = _small(workers=3, engine="ray")
    assert np.array_equal(losses, serial[0]) and np.array_equal(pred, serial[2])


class Failing(SquaredError):
    """Raises in the worker that owns member 40, at epoch 1."""

    def __call__(self, es, state, members):
        if state.epoch == 1 and 40 in members:
            raise ArithmeticError("member 40 cannot be scored")
        return super().__call__(es, state, members)


def test_a_worker_that_raises_shows_its_error():
    es, state = ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[8]), pop_size=64, group_size=8, seed=0,
                          sigma=0.1, lr=0.1)
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    with pytest.raises(WorkerError, match="(?s)worker 1 .*raised.*ArithmeticError: member 40 cannot be scored"):
        es.train(state, Failing(x, x, 8), 3, workers=2)


@pytest.mark.parametrize("argv, words", [(["--workers", "0"], "workers"), (["--workers", "1000"], "workers"),
                                         (["--group-size", "3"], "group_size"), (["--epochs", "0"], "--epochs"),
                                         (["--group-size", "0"], "--group-size")])   # was a ZeroDivisionError
def test_the_example_refuses_bad_flags_with_one_usage_line(argv, words):
    """examples/regression.py: a bad flag exits 2 with argparse's usage and the library's message
    naming the argument, never a traceback (the library checks before any work)."""
    import os
    import subprocess
    script = Path(__file__).resolve().parents[2] / "examples" / "regression.py"
    p = subprocess.run([sys.executable, str(script), "--pop-size", "64", "--group-size", "8", *argv],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "error:" in p.stderr and words in p.stderr, p.stderr


class _WideSquaredError:
    """−‖f(x)‖² of a 256-wide MLP on fixed inputs: matmuls big enough that OpenBLAS splits them."""

    def __call__(self, es, state, members):
        x = np.linspace(-1, 1, 256 * len(members), dtype=np.float32).reshape(len(members), 256)
        return -(es.forward_members(state, members, x) ** 2).sum(axis=1)


def test_workers_take_the_coordinators_blas_threads():
    """A coordinator on 2 BLAS threads: the workers start on 2 as well (npegg.parallel.engine.
    SameBlasThreads), so their replicas compute the coordinator's bits and the run equals the serial one."""
    from npegg.blas import blas_info, blas_threads
    if not blas_info():
        pytest.fail("no BLAS visible to threadpoolctl: NumPy's wheels always ship OpenBLAS")
    runs = []
    with blas_threads(2):
        for workers in (1, 2):
            es, state = ES.create(MLP, dict(in_dim=256, out_dim=256, hidden_dims=[256]), pop_size=64, group_size=8,
                                  seed=0, sigma=0.1, lr=0.1)
            runs.append(es.train(state, _WideSquaredError(), 3, workers=workers).params)
    from npegg.tree import tree_items
    serial, parallel = dict(tree_items(runs[0])), dict(tree_items(runs[1]))
    assert serial.keys() == parallel.keys()
    for path, value in serial.items():
        assert np.array_equal(value, parallel[path]), path
