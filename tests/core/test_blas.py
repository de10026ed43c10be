"""The library's BLAS thread policy (npegg.blas): npegg changes nothing by itself; the context
manager sets and restores; bad counts are refused by name."""
import subprocess
import sys

import pytest

from npegg.blas import blas_info, blas_threads, set_blas_threads

NEEDS_BLAS = pytest.mark.skipif(not blas_info(), reason="no BLAS that threadpoolctl can see in this NumPy")


def _threads():
    return blas_info()[0]["num_threads"]


@NEEDS_BLAS
def test_blas_threads_sets_and_restores():
    set_blas_threads(2)
    with blas_threads(1):
        assert _threads() == 1
    assert _threads() == 2
    set_blas_threads(1)
    assert _threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.0, True, "2", None])
def test_bad_thread_counts_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"n \(BLAS threads\) must be an integer >= 1"):
        set_blas_threads(bad)
    with pytest.raises(ValueError, match=r"n \(BLAS threads\) must be an integer >= 1"):
        with blas_threads(bad):
            pass


@NEEDS_BLAS
def test_the_library_never_changes_the_thread_count_by_itself():
    """Importing npegg, creating an ES, a forward and a step leave a 3-thread BLAS on 3 threads."""
    code = """
import numpy as np
from threadpoolctl import threadpool_limits, threadpool_info
threadpool_limits(3, user_api="blas")
from npegg.es import ES
from npegg.models import MLP
es, state = ES.create(MLP, dict(in_dim=2, out_dim=1, hidden_dims=[8]), pop_size=8, sigma=0.1, lr=0.1, seed=0)
state = es.step(state, es.forward(state, np.ones((8, 2), np.float32))[:, 0])
print([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[3]"
