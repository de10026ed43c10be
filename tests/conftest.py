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
    """The site built once per session by ``docs/build.py --small``: this build IS the run of every
    chapter and solutions file (tests/test_tutorials.py reads its build.json) and the site that
    tests/test_book.py checks and opens in a browser."""
    import json
    import subprocess
    from types import SimpleNamespace

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, str(root / "docs" / "build.py"), "--out", str(out), "--small",
                           "--jobs", "2"], capture_output=True, text=True, timeout=3000)
    manifest = out / "build.json"
    return SimpleNamespace(out=out, html=out / "html", proc=proc, log=f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}",
                           manifest=json.loads(manifest.read_text()) if manifest.is_file() else None)


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for the browser tests, installed here when it is missing and the tests
    run as root (as on CI and a fresh machine of this project), so that the README's test command
    needs nothing else; otherwise the tests stop and say how to install it."""
    import shutil
    from browser import chromium_path

    if chromium_path() is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail("the browser tests need Chromium: sudo apt-get install chromium (Debian/Ubuntu), "
                        "or run the tests as root on Debian and they install it themselves")
        apt_get("update", "-qq")
        apt_get("install", "-y", "-qq", "chromium")
    path = chromium_path()
    assert path is not None, "apt-get installed chromium but it is not on PATH"
    return path


def apt_get(*args: str, wait: float = 600.0) -> None:
    """Run ``apt-get *args`` with no questions asked; while another apt or dpkg holds its lock (a
    fresh machine's daily upgrade at boot, a second test session installing too), wait for it, up
    to ``wait`` seconds, instead of failing at once (apt 2.6's DPkg::Lock::Timeout covers the
    install's lock but not the one ``update`` takes on the package lists)."""
    import subprocess
    import time

    cmd = ["apt-get", "-o", f"DPkg::Lock::Timeout={int(wait)}", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    give_up = time.monotonic() + wait
    while True:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=wait + 1200)
        if proc.returncode == 0:
            return
        if "Could not get lock" not in proc.stderr or time.monotonic() > give_up:
            pytest.fail(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        time.sleep(5)


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray instance for the whole test session (starting one costs ~10 s); three
    logical CPUs so that three one-CPU actors fit on a 2-core machine."""
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
