"""``npegg train --workers N``: the same bits for any N and engine, resume across worker counts,
a killed worker, a raising worker, and Ctrl-C leaving no process behind. Real worker processes
(spawn) and a real local Ray instance."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npegg.program.checkpoint import load_checkpoint
from npegg.program.data import load_corpus
from npegg.program.shard import ParallelRun
from npegg.program.config import TrainConfig
from npegg.program.runs import make_run
from npegg.tree import flatten
from npegg_process import ENV
from test_cli import corpus, run  # noqa: F401  (the tiny corpus fixture)

TINY = ["--hidden-dim", "8", "--n-layers", "1", "--pop-size", "12", "--group-size", "2", "--tokens-per-update", "16",
        "--eval-every", "2", "--sample-bytes", "0"]


def train(corpus, out, *extra, epochs=4):
    code, text = run(["train", "--data", corpus, "--epochs", epochs, "--out", out, *TINY, *extra])
    assert code == 0, text
    return out


def same_bits(a, b):
    ca, cb = (load_checkpoint(Path(p) / "checkpoint.npz") for p in (a, b))
    assert ca.scalars == cb.scalars
    for tree in ("params", "opt_state", "hidden", "data"):
        if tree in ca.trees:
            fa, fb = flatten(ca.trees[tree]), flatten(cb.trees[tree])
            assert fa.keys() == fb.keys()
            for k in fa:
                assert np.array_equal(fa[k], fb[k]), f"{tree}/{k}"


@pytest.fixture(scope="module")
def one(corpus, tmp_path_factory):  # noqa: F811
    """The one-process run (the twin every other worker count must match)."""
    return {mode: train(corpus, tmp_path_factory.mktemp(mode) / "w1", "--mode", mode, "--workers", "1")
            for mode in ("float", "int")}


@pytest.mark.parametrize("mode", ["float", "int"])
def test_two_and_three_worker_processes_give_the_one_process_bits(one, corpus, tmp_path, mode):  # noqa: F811
    for w in (2, 3) if mode == "float" else (3,):
        same_bits(one[mode], train(corpus, tmp_path / f"w{w}", "--mode", mode, "--workers", w))


def test_ray_actors_give_the_one_process_bits(one, corpus, tmp_path, ray_session):  # noqa: F811
    same_bits(one["float"], train(corpus, tmp_path / "ray3", "--engine", "ray", "--workers", "3"))
    same_bits(one["int"], train(corpus, tmp_path / "int-ray", "--mode", "int", "--engine", "ray", "--workers", "2"))


def test_resume_with_another_worker_count_continues_bit_for_bit(corpus, tmp_path):  # noqa: F811
    """2 epochs on 3 workers, then 2 more on 2 workers = 4 epochs in one process (constant schedules)."""
    const = ["--lr-schedule", "constant"]
    straight = train(corpus, tmp_path / "straight", *const, "--workers", "1")
    split = train(corpus, tmp_path / "split", *const, "--workers", "3", epochs=2)
    code, text = run(["train", "--resume", split, "--epochs", "4", "--workers", "2"])
    assert code == 0, text
    same_bits(straight, split)


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_worker_is_replaced_by_the_others_and_the_bits_stay(corpus, engine, request):  # noqa: F811
    """SIGKILL of a worker process (ray.kill of an actor) during epoch 4: the run rebuilds from its
    last save (epoch 2), replays on the remaining worker, and ends with the one-process bits."""
    if engine == "ray":
        request.getfixturevalue("ray_session")
    cfg = TrainConfig(data=str(corpus), hidden_dim=8, n_layers=1, pop_size=12, group_size=2, tokens_per_update=16,
                      epochs=6, eval_every=2).resolved()
    data = load_corpus(cfg.data)

    def trained(workers, kill_at=None):
        said = []
        r = ParallelRun(make_run(cfg, data), data.train, workers, engine, say=said.append)
        try:
            while r.epoch < cfg.epochs:
                if r.epoch == 2:
                    r.checkpoint_trees()                            # a save: the point a lost worker is rebuilt from
                if r.epoch == kill_at:
                    if engine == "local":
                        os.kill(r.pids()[1], signal.SIGKILL)
                    else:
                        import ray
                        ray.kill(r.pop.engine.actors[1])
                r.epoch_step()
            return r.checkpoint_trees(), said, r.workers
        finally:
            r.close()

    (want, _), _, _ = trained(1)
    (got, scalars), said, left = trained(2, kill_at=4)
    assert left == 1 and len(said) == 1
    assert "worker 1" in said[0] and "continuing with 1 worker from epoch 2 (replaying 2 epochs)" in said[0]
    if engine == "local":
        assert "killed by SIGKILL" in said[0]
    for tree in ("params", "opt_state", "hidden", "data"):
        fa, fb = flatten(want[tree]), flatten(got[tree])
        assert all(np.array_equal(fa[k], fb[k]) for k in fa), tree


def _session_processes(sid: int) -> list:
    """pids of the live (not zombie) processes in session ``sid``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(d.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc (Linux)")
def test_ctrl_c_saves_and_leaves_no_worker_behind(corpus, tmp_path):  # noqa: F811
    """SIGINT to the whole process group, as a terminal sends it: exit 130, a checkpoint, and no
    process of that session left (workers, the spawn resource tracker, the coordinator)."""
    out = tmp_path / "cc"
    env = ENV
    proc = subprocess.Popen([sys.executable, "-m", "npegg", "train", "--data", str(corpus), "--epochs", "100000",
                             "--out", str(out), *TINY[:-4], "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        for line in proc.stdout:                         # epoch 1 is done: the workers are running
            if re.match(r"epoch +1/", line):
                break
        assert len(_session_processes(proc.pid)) >= 3   # coordinator, 2 workers (and spawn's resource tracker)
        os.killpg(proc.pid, signal.SIGINT)
        text = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, text
    assert "interrupted: epoch" in text and load_checkpoint(out / "checkpoint.npz").scalars["epoch"] >= 1
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(proc.pid) == []


def test_bad_worker_counts_exit_2_before_training(corpus, tmp_path, capsys):  # noqa: F811
    code, _ = run(["train", "--data", corpus, "--out", tmp_path / "x", *TINY, "--workers", "7"])
    assert code == 2 and "--workers: must be between 1 and 6" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("address", ["not-a-ray-address", "127.0.0.1:1"])
def test_a_bad_ray_address_is_one_clear_error_not_a_traceback(corpus, tmp_path, address):  # noqa: F811
    """RAY_ADDRESS naming no cluster: exit 1 with a message naming --engine ray and RAY_ADDRESS, no
    traceback, and no advice to --resume a run that saved nothing. A subprocess, so that the test
    session's own Ray instance (ray_session) cannot hide the address. HOST:PORT where nothing
    listens: ray.init alone retried it for many minutes in silence; npegg tries the port first."""
    env = {**ENV, "RAY_ADDRESS": address}
    proc = subprocess.run([sys.executable, "-m", "npegg", "train", "--data", str(corpus), "--epochs", "2",
                           "--out", str(tmp_path / "r"), *TINY, "--engine", "ray", "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--engine ray" in proc.stderr and f"RAY_ADDRESS={address}" in proc.stderr
    assert "Traceback" not in proc.stderr and "--resume" not in proc.stderr
