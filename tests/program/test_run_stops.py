"""Every way a run ends keeps its folder whole (issue 19, items 3, 4, 5): real signals to real processes.

SIGTERM and SIGHUP save like Ctrl-C (exit 143, 129); more signals during the save are swallowed;
a stop during the start-up checks or the final sample is one clean line; an output nobody reads
any more (``| head``, ``>&-``, ``/dev/full``) stops the printing, not the run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npegg.program.config import MAX_SAMPLE_BYTES   # the longest sample: minutes for the tiny model, so the Ctrl-C comes while it runs
from npegg_process import ENV, finish, npegg_process, npegg_started, read_until, write_word_corpus
from test_run_folder import FOREVER, TINY, whole
from test_workers import _session_processes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("corpus"), seed=23)


def stopped(corpus, out, sig, *extra, line=r"epoch +1/", signal_group=True, **popen):
    """A run to FOREVER epochs, sent ``sig`` once ``line`` is printed: (exit, stdout, stderr)."""
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--out", out, *extra, **popen)
    try:
        read_until(p, line)
        (os.killpg if signal_group else os.kill)(p.pid, sig)
        return finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


# -- item 3: SIGTERM, SIGHUP ---------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                             (signal.SIGHUP, 129, "stopped by SIGHUP"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_stop_signal_saves_says_one_line_and_exits_128_plus_its_number(corpus, tmp_path, sig, code, word):
    out = tmp_path / "run"
    status, text, err = stopped(corpus, out, sig, signal_group=False)      # to the process alone, as `kill` does
    assert status == code and err == "", err
    last = text.strip().splitlines()[-1]
    e = whole(out)
    assert last == f"{word}: epoch {e} saved to {out / 'checkpoint.npz'}; continue with  npegg train --resume {out}"
    assert e >= 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc (Linux)")
def test_sigterm_to_the_whole_group_with_workers_saves_and_leaves_no_process(corpus, tmp_path):
    """What `timeout`, systemd and Slurm do: every process of the group gets SIGTERM. The workers
    ignore it, the coordinator saves and closes them."""
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--out", out, "--workers", "2", "--pop-size", "16")
    try:
        read_until(p, r"epoch +1/")
        assert len(_session_processes(p.pid)) >= 3               # coordinator and two workers
        os.killpg(p.pid, signal.SIGTERM)
        status, text, err = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 143 and "stopped by SIGTERM: epoch" in text and "Traceback" not in err, err
    assert whole(out) >= 1
    deadline = time.monotonic() + 10
    while _session_processes(p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(p.pid) == []


def test_sighup_ignored_by_nohup_stays_ignored(corpus, tmp_path):
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--out", out,
                      preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        read_until(p, r"epoch +1/")
        os.kill(p.pid, signal.SIGHUP)
        time.sleep(1.0)
        assert p.poll() is None                                  # still training
        os.kill(p.pid, signal.SIGTERM)
        status, text, err = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 143 and "stopped by SIGTERM" in text, err
    whole(out)


# -- item 5: more signals during the save, a stop at start-up, a stop during the final sample -------------
def test_a_burst_of_ctrl_c_cannot_abort_the_save_the_first_one_asked_for(corpus, tmp_path):
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, "--hidden-dim", "64", "--n-layers", "2", *FOREVER,
                      "--out", out)
    try:
        read_until(p, r"epoch +1/")
        for _ in range(40):                                     # one every 5 ms for 0.2 s, as a user hammering Ctrl-C
            os.killpg(p.pid, signal.SIGINT)
            time.sleep(0.005)
        status, text, err = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 130 and err == "", err
    assert text.count("interrupted: epoch") == 1 and whole(out) >= 1
    assert not [q for q in out.iterdir() if q.name.endswith(".tmp")]


def numpy_loaded(pid: int) -> bool:
    """NumPy's core library is mapped into process ``pid``: Python itself has started and npegg's
    ``entry`` is importing (before that, a Ctrl-C is the interpreter's own affair: Python prints
    "Could not import runpy module" and a traceback, whatever the program)."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the process start through /proc (Linux)")
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8, 1.5, 2.5])
def test_ctrl_c_during_start_up_is_one_clean_line_and_the_folder_is_whole_or_absent(corpus, tmp_path, delay):
    """SIGINT `delay` s after NumPy is loaded: during the imports, the flag checks, the corpus, the
    lock, the space probe, the baselines, the workers' start or epoch 0's validation. ONE signal
    stops the run, wherever it lands (the workers' spawn included: see the test below)."""
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--out", out)
    try:
        deadline = time.monotonic() + 60
        while not numpy_loaded(p.pid) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        os.killpg(p.pid, signal.SIGINT)
        status, text, err = finish(p, timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 130 and "Traceback" not in err and "Traceback" not in text, (text, err)
    assert len(err.strip().splitlines()) <= 1
    if out.exists() and (out / "checkpoint.npz").exists():
        whole(out)
    elif out.exists():
        assert [q.name for q in out.iterdir() if q.name != ".npegg-lock"] == []


def children(pid: int) -> int:
    """How many child processes ``pid``'s main thread has started (Linux: /proc/PID/task/PID/children)."""
    try:
        return len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return 0


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="watches the workers being spawned through /proc (Linux)")
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")])
@pytest.mark.parametrize("seen", [2, 4, 6])
def test_a_stop_signal_while_the_workers_are_spawned_is_not_lost(corpus, tmp_path, sig, code, word, seen):
    """Six workers are spawned one after another; the signal goes to the whole group the moment the
    coordinator has ``seen`` children (spawn's resource tracker, then the workers), so it lands while
    the coordinator is inside ``proc.start()`` for one worker or between two, and while the workers
    started so far are still importing. ONE signal stops the run: before the first epoch with nothing
    saved (or, if it came later, with a whole folder), one line, no traceback from any process, and
    no process left behind. (Before, a signal inside ``proc.start()`` was ignored and the run went on.)"""
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--pop-size", "16", "--workers", "6", "--out", out)
    try:
        deadline = time.monotonic() + 60
        while children(p.pid) < seen and p.poll() is None and time.monotonic() < deadline:
            pass                                                # as fast as we can look: the window is short
        os.killpg(p.pid, sig)
        status, text, err = finish(p, timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == code and "Traceback" not in err and "Traceback" not in text, (status, text, err)
    assert err == "" and f"{word}" in text.strip().splitlines()[-1], (text, err)
    if (out / "checkpoint.npz").exists():
        whole(out)
    elif out.exists():
        assert [q.name for q in out.iterdir() if q.name != ".npegg-lock"] == []
    deadline = time.monotonic() + 10
    while _session_processes(p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(p.pid) == []


def stop_signals_in(pid: int, field: str) -> set:
    """Which of SIGINT, SIGTERM, SIGHUP are in ``field`` (SigBlk: blocked, SigIgn: ignored) of
    /proc/PID/status, a hexadecimal mask with bit s − 1 for signal s."""
    mask = next(int(line.split()[1], 16) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith(field + ":"))
    return {s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if mask >> (s - 1) & 1}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks through /proc (Linux)")
def test_workers_ignore_the_stop_signals_and_nobody_keeps_them_blocked(corpus, tmp_path):
    """The workers were spawned with the stop signals blocked; once running they ignore them and
    have unblocked them (as before the mask was used), and the coordinator's mask is restored."""
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, *FOREVER, "--pop-size", "16", "--workers", "2", "--out", out)
    try:
        read_until(p, r"epoch +1/")
        workers = [q for q in _session_processes(p.pid) if b"spawn_main" in Path(f"/proc/{q}/cmdline").read_bytes()]
        assert len(workers) == 2
        everything = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        for q in workers:
            assert stop_signals_in(q, "SigIgn") == everything and stop_signals_in(q, "SigBlk") == set()
        assert stop_signals_in(p.pid, "SigBlk") == set() and stop_signals_in(p.pid, "SigIgn") == set()
        os.killpg(p.pid, signal.SIGINT)
        status, text, err = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 130 and err == "", err
    whole(out)


def test_ctrl_c_during_the_final_sample_keeps_checkpoint_and_metrics_and_resume_writes_the_sample(corpus, tmp_path):
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, "--epochs", "2", "--sample-bytes", str(MAX_SAMPLE_BYTES), "--out", out)
    try:
        read_until(p, r"^validation bytes")                     # the results table: training is over, sampling next
        time.sleep(0.3)
        os.killpg(p.pid, signal.SIGINT)
        status, text, err = finish(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert status == 130 and err == "", err
    assert "sample.txt and curve.png were not written" in text
    assert whole(out) == 2 and json.loads((out / "metrics.json").read_text())["result"]["complete"] is True
    assert not (out / "sample.txt").exists()
    p = npegg_process("train", "--resume", out, "--sample-bytes", "30")
    assert p.returncode == 0 and (out / "sample.txt").is_file(), p.stderr


# -- item 4: nobody reading the output ---------------------------------------------------------------------
def test_a_closed_pipe_stops_the_printing_not_the_run(corpus, tmp_path):
    """`npegg train | head -1`: the reader goes away after one line; the run finishes and saves."""
    out = tmp_path / "run"
    p = npegg_started("train", "--data", corpus, *TINY, "--epochs", "30", "--eval-every", "1", "--out", out)
    p.stdout.readline()
    p.stdout.close()
    p.stdout = None
    status, _, err = finish(p)
    assert status == 0 and "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert whole(out) == 30


@pytest.mark.parametrize("how", ["closed", "full"])
def test_a_closed_or_full_stdout_stops_the_printing_not_the_run(corpus, tmp_path, how):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "npegg", "train", "--data", str(corpus), *TINY, "--epochs", "3", "--out", str(out)]
    if how == "closed":
        p = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *argv], capture_output=True, text=True, env=ENV,
                           timeout=120)
    else:
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full on this system")
        with open("/dev/full", "w") as full:
            p = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
    assert whole(out) == 3


def test_sample_and_eval_into_a_closed_pipe_end_cleanly(corpus, tmp_path):
    out = tmp_path / "run"
    assert npegg_process("train", "--data", corpus, *TINY, "--epochs", "1", "--out", out).returncode == 0
    for cmd in (f'"$@" sample {out} --length 20000 | head -c 10', f'"$@" eval {out} | head -c 3'):
        p = subprocess.run(["sh", "-c", cmd, "sh", sys.executable, "-m", "npegg"], capture_output=True, text=True,
                           env=ENV, timeout=120)
        assert p.returncode == 0 and p.stderr == "", (cmd, p.stderr)
