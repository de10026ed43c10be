"""A hung worker (SIGSTOP: alive, silent) is lost after NPEGG_WORKER_TIMEOUT seconds and the run
goes on without it; Ctrl-C with a hung worker still saves and exits. Real ``npegg train``
processes, real spawn workers, real signals."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npegg.program.checkpoint import load_checkpoint
from npegg_process import ENV
from test_cli import corpus  # noqa: F401  (the tiny corpus fixture)
from test_workers import TINY, _session_processes

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc (Linux)")


def _workers(sid: int) -> list:
    """pids of the spawned worker processes in session ``sid`` (not the resource tracker)."""
    found = []
    for pid in _session_processes(sid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(pid)
    return sorted(found)


def _start(corpus, out, *extra, timeout="2"):  # noqa: F811
    env = {**ENV, "NPEGG_WORKER_TIMEOUT": timeout}
    return subprocess.Popen([sys.executable, "-m", "npegg", "train", "--data", str(corpus), "--epochs", "100000",
                             "--out", str(out), *TINY, "--workers", "2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _read_until(proc, pattern, seen):
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError("".join(seen))


def _stop_a_worker(proc, seen) -> int:
    _read_until(proc, r"epoch +1/", seen)               # the workers are running
    pid = _workers(proc.pid)[-1]
    os.kill(pid, signal.SIGSTOP)
    return pid


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return state[state.rindex(")") + 2] == "Z"


def _finish(proc, sid, seen):
    try:
        seen.append(proc.communicate(timeout=120)[0])
    finally:
        if proc.poll() is None:
            os.killpg(sid, signal.SIGCONT)
            os.killpg(sid, signal.SIGKILL)
    return "".join(seen)


def test_a_stopped_worker_is_lost_after_the_timeout_and_the_run_goes_on(corpus, tmp_path):  # noqa: F811
    out, seen = tmp_path / "stall", []
    proc = _start(corpus, out)
    try:
        pid = _stop_a_worker(proc, seen)
        said = _read_until(proc, r"stopped answering", seen)
        assert f"(pid {pid}) stopped answering" in said and "the limit is 2 s" in said
        assert "continuing with 1 worker from epoch" in said
        _read_until(proc, r"epoch +\d+/", seen)         # training goes on, in the coordinator alone
        assert _gone(pid)                               # the hung worker was killed, not left stopped
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        text = _finish(proc, proc.pid, seen)
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted: epoch" in text
    assert load_checkpoint(out / "checkpoint.npz").scalars["epoch"] >= 1


def test_ctrl_c_with_a_stopped_worker_saves_and_stops(corpus, tmp_path):  # noqa: F811
    """SIGSTOP a worker, then at once Ctrl-C the process group: the save waits for the hung worker
    no longer than the timeout, replays without it, saves, exits 130, and leaves no process.

    The run saves only when stopped (``--save-every`` = ``--epochs``), so the Ctrl-C always finds
    a save to make, which needs every worker. With the saves every 2 epochs, a test process slowed
    down (a loaded machine) could read "epoch 1" after the run had saved epoch k and Ctrl-C it
    before epoch k + 1: nothing to save, rightly no wait for the hung worker, and this test failed."""
    out, seen = tmp_path / "stall-cc", []
    proc = _start(corpus, out, "--save-every", "100000")
    try:
        _stop_a_worker(proc, seen)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        text = _finish(proc, proc.pid, seen)
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "stopped answering" in text and "interrupted: epoch" in text, text
    saved = load_checkpoint(out / "checkpoint.npz").scalars["epoch"]
    assert re.search(rf"interrupted: epoch {saved} saved", text), text
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(proc.pid) == []


def test_a_bad_worker_timeout_is_refused_before_any_work(corpus, tmp_path):  # noqa: F811
    env = {**ENV, "NPEGG_WORKER_TIMEOUT": "soon"}
    p = subprocess.run([sys.executable, "-m", "npegg", "train", "--data", str(corpus), "--epochs", "2",
                        "--out", str(tmp_path / "t"), *TINY, "--workers", "2"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "NPEGG_WORKER_TIMEOUT" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_stopped_worker_is_replaced_and_the_bits_stay(corpus, engine, request, monkeypatch):  # noqa: F811
    """SIGSTOP of a worker process (of a Ray actor's process) during epoch 4, with a 2 s timeout:
    the run rebuilds from its last save (epoch 2), replays on the remaining worker, and ends with
    the one-process bits, as for a killed worker (test_workers.py)."""
    import numpy as np
    from npegg.program.blas import default_blas_threads
    from npegg.program.config import TrainConfig
    from npegg.program.data import load_corpus
    from npegg.program.runs import make_run
    from npegg.program.shard import ParallelRun
    from npegg.tree import flatten
    if engine == "ray":
        request.getfixturevalue("ray_session")
    monkeypatch.setenv("NPEGG_WORKER_TIMEOUT", "2")
    default_blas_threads()                      # as `npegg train` does: the workers' BLAS thread count
    cfg = TrainConfig(data=str(corpus), hidden_dim=8, n_layers=1, pop_size=12, group_size=2, tokens_per_update=16,
                      epochs=6, eval_every=2).resolved()
    data = load_corpus(cfg.data)

    def trained(workers, stop_at=None):
        said, stopped = [], []
        r = ParallelRun(make_run(cfg, data), data.train, workers, engine, say=said.append)
        try:
            while r.epoch < cfg.epochs:
                if r.epoch == 2:
                    r.checkpoint_trees()
                if r.epoch == stop_at:
                    stopped.append(r.pids()[1])
                    os.kill(stopped[0], signal.SIGSTOP)
                r.epoch_step()
            return r.checkpoint_trees(), said, r.workers
        finally:
            r.close()
            for pid in stopped:
                if not _gone(pid):
                    os.kill(pid, signal.SIGCONT)

    (want, _), _, _ = trained(1)
    (got, _), said, left = trained(2, stop_at=4)
    assert left == 1 and len(said) == 1, said
    assert "worker 1" in said[0] and "stopped answering" in said[0] and "the limit is 2 s" in said[0]
    assert "continuing with 1 worker from epoch 2 (replaying 2 epochs)" in said[0]
    for tree in ("params", "opt_state", "hidden", "data"):
        fa, fb = flatten(want[tree]), flatten(got[tree])
        assert all(np.array_equal(fa[k], fb[k]) for k in fa), tree
