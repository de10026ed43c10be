"""A run folder is one process's, and nothing a user saved is written over (issue 19, items 1, 2, 6, 7, 8).

Every probe is a real ``npegg`` process on a tiny corpus; the concurrent ones are real concurrent
processes holding a real OS lock.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from npegg.program.checkpoint import load_checkpoint
from npegg.tree import flatten
from npegg_process import finish, npegg_process, npegg_started, read_until, write_word_corpus

TINY = ["--hidden-dim", "8", "--n-layers", "1", "--pop-size", "8", "--group-size", "2",
        "--tokens-per-update", "16", "--sample-bytes", "0", "--lr-schedule", "constant"]
FOREVER = ["--epochs", "1000000"]                   # runs until a test stops it (validation and saves only then)


def npegg(*argv, code=0, **kw):
    p = npegg_process(*argv, **kw)
    assert p.returncode == code, (p.returncode, p.stdout[-2000:], p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_line(p) -> str:
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, p.stderr
    return err


def epoch_of(run: Path) -> int:
    return int(load_checkpoint(run / "checkpoint.npz").scalars["epoch"])


def metrics_epoch(run: Path) -> int:
    return json.loads((run / "metrics.json").read_text())["history"]["epoch"][-1]


def whole(run: Path) -> int:
    """Checkpoint, its history and both metrics files end at the same epoch; returns it."""
    ck = load_checkpoint(run / "checkpoint.npz")
    e = int(ck.scalars["epoch"])
    assert ck.trees["history"]["epoch"][-1] == e
    assert metrics_epoch(run) == e
    assert (run / "metrics.csv").read_text().splitlines()[-1].split(",")[0] == str(e)
    return e


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("corpus"), seed=19)


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """A finished 4-epoch run, and a copy of its epoch-2 checkpoint (saved every 2 epochs)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    npegg("train", "--data", corpus, *TINY, "--epochs", "2", "--out", out)
    shutil.copy(out / "checkpoint.npz", out.parent / "epoch2.npz")
    npegg("train", "--resume", out, "--epochs", "4", "--sample-bytes", "20")
    return out


def files(run: Path) -> dict:
    """{name: bytes} of a run folder's files, its lock file left out (it holds the last holder's pid)."""
    return {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".npegg-lock"}


def copy_of(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


# -- item 1: a backup checkpoint inside the run folder -----------------------------------------------
def test_resume_from_a_backup_never_writes_over_its_folders_newer_run(finished, tmp_path):
    run = copy_of(finished, tmp_path / "run")
    shutil.copy(finished.parent / "epoch2.npz", run / "epoch2-backup.npz")
    before = files(run)
    p = npegg("train", "--resume", run / "epoch2-backup.npz", "--epochs", "3", cwd=tmp_path)
    assert files(run) == before          # epoch 4 is still epoch 4
    new = [q for q in (tmp_path / "runs").iterdir()]
    assert len(new) == 1 and f"run folder: runs/{new[0].name} (resuming at epoch 2 from {run / 'epoch2-backup.npz'})" in p.stdout
    assert whole(new[0]) == 3
    npegg("train", "--resume", run / "epoch2-backup.npz", "--epochs", "3", "--out", tmp_path / "mine")
    assert whole(tmp_path / "mine") == 3 and files(run) == before


def test_resume_of_a_finished_run_into_a_new_folder_writes_it(finished, tmp_path):
    new = tmp_path / "new"
    p = npegg("train", "--resume", finished, "--out", new)
    assert f"wrote {new / 'checkpoint.npz'}" in p.stdout
    assert whole(new) == 4 and (new / "sample.txt").is_file()
    a, b = (flatten(load_checkpoint(r / "checkpoint.npz").trees["params"]) for r in (finished, new))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# -- item 2: one process per folder ----------------------------------------------------------------------
def test_a_folder_in_use_is_refused_with_the_holders_pid(corpus, tmp_path):
    """While A trains in X: `--out X`, `--out X --overwrite` and `--resume X` are refused before any
    work, naming A's pid; A is not disturbed (none of its temporaries deleted) and saves when stopped."""
    x = tmp_path / "x"
    a = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--save-every", "1", "--out", x)
    try:
        read_until(a, r"epoch +1/")
        for argv, todo in ((["--data", corpus, *TINY, "--out", x], "choose another --out"),
                           (["--data", corpus, *TINY, "--out", x, "--overwrite"], "choose another --out"),
                           (["--resume", x, "--epochs", "2000000"], "--out NEW")):
            p = npegg("train", *argv, code=2)
            err = one_line(p)
            assert f"is in use by npegg process {a.pid}" in err and todo in err and "wait" in err, err
            assert "epoch" not in p.stdout
        os.killpg(a.pid, signal.SIGTERM)
        code, out, err = finish(a)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert code == 143 and "Traceback" not in err, err
    whole(x)


def test_two_runs_started_together_into_one_folder_one_is_refused(corpus, tmp_path):
    x = tmp_path / "x"
    procs = [npegg_started("train", "--data", corpus, *TINY, "--epochs", "3", "--seed", str(s), "--out", x)
             for s in (1, 2)]
    results = [finish(p) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[0] == 2)[2].strip()
    assert len(refused.splitlines()) == 1 and ("is in use by npegg process" in refused or "not empty" in refused)
    winner = next(s for s, r in zip((1, 2), results) if r[0] == 0)
    assert load_checkpoint(x / "checkpoint.npz").config["train"]["seed"] == winner and whole(x) == 3


def test_a_parallel_seed_sweep_without_out_gets_one_folder_per_run(corpus, tmp_path):
    seeds = (1, 2, 3, 4)
    procs = [npegg_started("train", "--data", corpus, *TINY, "--epochs", "1", "--seed", str(s), cwd=tmp_path)
             for s in seeds]
    results = [finish(p, timeout=300) for p in procs]
    assert [r[0] for r in results] == [0] * len(seeds), results
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == len(seeds)
    assert sorted(load_checkpoint(f / "checkpoint.npz").config["train"]["seed"] for f in folders) == list(seeds)


def test_kill_9_leaves_no_lock_behind_and_resume_cleans_up(corpus, tmp_path):
    """The kernel drops a killed process's lock: the lock file stays, the next run takes the folder,
    removes the temporaries the kill may have left and rewrites the metrics from the checkpoint."""
    x = tmp_path / "x"
    a = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--save-every", "1", "--eval-every", "1", "--out", x)
    try:
        read_until(a, r"epoch +3/")
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert (x / ".npegg-lock").read_text().strip() == str(a.pid)
    e = epoch_of(x)
    npegg("train", "--resume", x, "--epochs", str(e + 1))
    assert not [q.name for q in x.iterdir() if q.name.endswith(".tmp")]
    assert whole(x) == e + 1


def test_a_refused_run_leaves_no_folder_and_an_empty_one_is_not_busy(corpus, tmp_path):
    x = tmp_path / "x"
    one_line(npegg("train", "--data", tmp_path / "missing", *TINY, "--out", x, code=1))
    assert not x.exists()
    x.mkdir()
    (x / ".npegg-lock").write_text("999999\n")                 # left by a killed run: not held by anyone
    npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--out", x)
    assert whole(x) == 1


# -- item 6: every interrupt leaves one run's files at one epoch -------------------------------------------
def stop_after(argv, line=r"epoch +1/", sig=signal.SIGINT, **kw):
    p = npegg_started(*argv, **kw)
    try:
        read_until(p, line)
        os.killpg(p.pid, sig)
        return finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_overwrite_of_a_finished_run_then_ctrl_c_leaves_only_the_new_run(finished, corpus, tmp_path):
    run = copy_of(finished, tmp_path / "a")
    assert (run / "sample.txt").is_file()
    code, out, err = stop_after(["train", "--data", corpus, *TINY, *FOREVER, "--seed", "7", "--out", run, "--overwrite"],
                                env={})
    assert code == 130 and "Traceback" not in err, err
    e = whole(run)
    m = json.loads((run / "metrics.json").read_text())
    assert m["config"]["seed"] == 7 and load_checkpoint(run / "checkpoint.npz").config["train"]["seed"] == 7
    assert m["result"]["epoch"] == e and m["result"]["complete"] is False
    assert not (run / "sample.txt").exists() and not (run / "curve.png").exists()   # the old run's, gone


def test_resume_of_a_finished_run_for_more_epochs_then_ctrl_c_updates_the_metrics(finished, tmp_path):
    run = copy_of(finished, tmp_path / "r")
    code, out, err = stop_after(["train", "--resume", run, "--epochs", "3000"], line=r"epoch +5/")
    assert code == 130 and "interrupted: epoch" in out and "Traceback" not in err, err
    assert whole(run) >= 5


def test_a_run_diverging_before_its_first_save_does_not_claim_another_runs_checkpoint(finished, corpus, tmp_path):
    run = copy_of(finished, tmp_path / "a")
    before = files(run)
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "4", "--sigma", "1e30", "--out", run, "--overwrite", code=1)
    err = one_line(p)
    assert "last good checkpoint" not in err and f"nothing was saved in {run}" in err
    assert files(run) == before


# -- item 7: --overwrite touches only npegg's own files ----------------------------------------------------
def test_overwrite_keeps_user_files_that_look_like_old_temporaries(finished, corpus, tmp_path):
    run = copy_of(finished, tmp_path / "a")
    mine = [".notes.txt.1a2b3c4d.tmp", ".checkpoint.npz.deadbeef.tmp", "notes.txt"]
    for name in mine:
        (run / name).write_text("mine")
    npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--out", run, "--overwrite")
    assert all((run / name).read_text() == "mine" for name in mine)


# -- item 8: the data a checkpoint was trained on -----------------------------------------------------------
def test_eval_says_when_the_data_is_not_the_checkpoints(corpus, tmp_path):
    data = shutil.copytree(corpus, tmp_path / "data")
    run = tmp_path / "run"
    npegg("train", "--data", data, *TINY, "--epochs", "1", "--out", run)
    p = npegg("eval", run)
    assert p.stderr == ""
    (data / "doc03.txt").write_text("an edited document, other bytes than the run saw.\n")
    p = npegg("eval", run)
    warning = one_line(p)
    assert warning.startswith("npegg eval: warning:") and str(data) in warning and "not the data" in warning
    assert "bpb" in p.stdout


def test_a_run_folder_is_never_inside_its_own_corpus(corpus, tmp_path):
    data = shutil.copytree(corpus, tmp_path / "data")
    for argv in (["--data", "."], ["--data", ".", "--out", "sub/run"], ["--data", data, "--out", data / "run"]):
        err = one_line(npegg("train", *argv, *TINY, "--epochs", "1", code=2, cwd=data))
        assert "inside --data" in err and "choose an --out outside it" in err
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in corpus.iterdir())
    npegg("train", "--data", ".", *TINY, "--epochs", "1", "--out", "../outside", cwd=data)
    assert whole(tmp_path / "outside") == 1
