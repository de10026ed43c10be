"""Shared test settings: hypothesis is derandomized (same examples on every run, as numpy's CI
does), with no per-example deadline because BLAS timings vary on a loaded 2-core machine."""
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # `from parity import ...`

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("NPEGG_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def small_book(tmp_path_factory):
    """The book built once per session by ``tutorials/build.py --small --keep-going``: this build
    IS the run of every chapter and solution (tests/test_tutorials.py reads its book.json) and
    the site that tests/test_book.py opens in a browser."""
    import json
    import subprocess
    import sys
    from types import SimpleNamespace

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, str(root / "tutorials" / "build.py"), "--out", str(out), "--small",
                           "--keep-going", "--jobs", "2"], capture_output=True, text=True, timeout=1800)
    manifest = out / "book.json"
    return SimpleNamespace(out=out, proc=proc, log=f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}",
                           manifest=json.loads(manifest.read_text()) if manifest.is_file() else None)


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray instance for the whole test session (starting one costs ~10 s); three
    logical CPUs so that three one-CPU actors fit on a 2-core machine."""
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
