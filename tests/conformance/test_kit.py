"""The conformance kit itself: npegg passes its own kit, the float bounds hold, a broken port is
caught, shrunk, saved and replayed, and bad arguments are refused with exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npegg.conformance import runner
from npegg.conformance.npegg_adapter import ADAPTER as NPEGG
from npegg.conformance.protocol import DIFFERS, EXACT, KNOWN, NOT_CLAIMED, OPERATIONS, WITHIN, load_adapter

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BROKEN = f"{HERE / 'broken_adapter.py'}:ADAPTER"
FLOAT64 = f"{HERE / 'adapters' / 'npegg_float64.py'}:ADAPTER"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "npegg.conformance", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("level", [1, 2, 3])
def test_npegg_passes_every_level_of_its_own_kit(level):
    """The self-check: npegg as an adapter claims every operation and every case is exact."""
    results = runner.check_adapter(NPEGG, levels=[level], max_examples=8)
    assert results and all(r.status == EXACT and r.cases == 8 for r in results), \
        [(r.op, r.status, r.message) for r in results if r.status != EXACT]


def test_float_tolerances_hold_against_float64():
    """npegg in float32 lies within the one-implementation bound (half the tolerance) of npegg in
    float64 on every float operation: the derived bounds are bounds, not guesses."""
    adapter = load_adapter(FLOAT64)
    results = runner.check_adapter(adapter, max_examples=25)
    claimed = [r for r in results if r.status != NOT_CLAIMED]
    assert len(claimed) == 13
    for r in claimed:
        assert r.status in (EXACT, WITHIN), (r.op, r.message)
        assert r.worst_ratio <= 0.5, (r.op, r.worst_ratio, r.message)


def test_a_broken_port_is_caught_shrunk_saved_and_replayed(tmp_path):
    adapter = load_adapter(BROKEN)
    res = runner.check_op(adapter, "do_mm", max_examples=50, failures=tmp_path, backend=BROKEN)
    assert res.status == DIFFERS and res.failing == 1
    op, case = runner.load_case(res.minimal_case)
    assert op == "do_mm"
    # shrunk: the smallest case that shows σ vs σ/√R is one member, one row, rank 2
    assert case["A"].shape[-1] == 2 and case["x"].shape[:2] == (1, 1), case
    assert f"--replay {res.minimal_case}" in res.replay
    replay = _cli("--backend", BROKEN, "--replay", res.minimal_case)
    assert replay.returncode == 1 and "do_mm: differs" in replay.stdout, replay.stdout + replay.stderr
    fixed = _cli("--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--replay", res.minimal_case)
    assert fixed.returncode == 0 and "do_mm: exact" in fixed.stdout, fixed.stdout + fixed.stderr


def test_an_int8_bug_is_caught_as_a_bit_difference(tmp_path):
    res = runner.check_op(load_adapter(BROKEN), "qegg_fitness", max_examples=50, failures=tmp_path)
    assert res.status == DIFFERS and "exact operation" in res.message
    _, case = runner.load_case(res.minimal_case)
    raw = case["raw"]
    assert raw.size == 2 and raw[0] == raw[1]                    # one pair, tied


def test_unclaimed_operations_are_reported_as_not_claimed():
    results = runner.check_adapter(load_adapter(BROKEN), max_examples=3, failures=None)
    status = {r.op: r for r in results}
    assert {op for op, r in status.items() if r.status == NOT_CLAIMED} == set(OPERATIONS) - {"do_mm", "qegg_fitness",
                                                                                                  "fitness_zscore"}
    assert all(status[op].cases == 0 for op in OPERATIONS if status[op].status == NOT_CLAIMED)
    assert status["fitness_zscore"].status == EXACT


def test_the_runner_cli_reports_xfails_and_writes_a_json_report(tmp_path):
    xfail = tmp_path / "broken.xfail"
    xfail.write_text("do_mm   # σ instead of σ/√R\nqegg_fitness\n")
    report = tmp_path / "r.json"
    out = _cli("--backend", BROKEN, "--xfail", str(xfail), "--report", str(report), "--max-examples", "30",
               "--failures", str(tmp_path / "f"))
    assert out.returncode == 0, out.stdout + out.stderr          # the only failures are the expected ones
    data = json.loads(report.read_text())
    assert data["operations"]["do_mm"]["status"] == KNOWN
    assert data["operations"]["fitness_zscore"]["status"] == EXACT
    assert data["operations"]["adam"]["status"] == NOT_CLAIMED
    assert "replay: python -m npegg.conformance" in out.stdout
    # without the xfail file the same run fails
    assert _cli("--backend", BROKEN, "--ops", "do_mm", "--failures", str(tmp_path / "g")).returncode == 1


@pytest.mark.parametrize("args, named", [
    (["--backend", "no_colon"], "--backend"),
    (["--backend", "no_such_module_xyz:ADAPTER"], "--backend"),
    (["--backend", "npegg.conformance.npegg_adapter:NOPE"], "--backend"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--xfail", "/no/such/file"], "--xfail"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--ops", "do_mm,nonsense"], "--ops"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--max-examples", "0"], "--max-examples"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--replay", "/no/such.npz"], "--replay"),
    ([], "--backend"),
    # found by the third hostile round: an empty list ran every operation; the two paths below were
    # tracebacks after the whole run (the report lost), or at the first failure to save
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--ops", ""], "--ops"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--ops", "fitness_zscore", "--max-examples", "2",
      "--report", "/no/such/folder/r.json"], "--report"),
    (["--backend", BROKEN, "--ops", "do_mm", "--max-examples", "5", "--failures", "pyproject.toml"], "--failures"),
    (["--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--replay", "pyproject.toml"], "--replay"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, named):
    out = _cli(*args)
    assert out.returncode == 2 and named in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_replay_of_an_npz_that_is_not_a_saved_case_is_a_usage_error(tmp_path):
    """An .npz without ``__op__`` (an npegg checkpoint, a numpy save) was a KeyError traceback."""
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    out = _cli("--backend", "npegg.conformance.npegg_adapter:ADAPTER", "--replay", str(tmp_path / "other.npz"))
    assert out.returncode == 2 and "--replay" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_pytest_plugin_runs_one_test_per_operation(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                          "npegg.conformance.pytest_plugin", "--conformance-backend", BROKEN,
                          "--conformance-max-examples", "20", "--conformance-failures", str(tmp_path), "-rs"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    tail = out.stdout.strip().splitlines()[-1]
    n_unclaimed = len(OPERATIONS) - 3
    assert f"2 failed, 1 passed, {n_unclaimed} skipped" in tail, out.stdout[-3000:]
    assert "not claimed by broken toy" in out.stdout and "replay: python -m npegg.conformance" in out.stdout


@pytest.mark.parametrize("args, named", [
    (["--conformance-max-examples", "0"], "--conformance-max-examples"),         # was 3 hypothesis errors
    (["--conformance-failures", "notes.txt"], "--conformance-failures"),         # a file: a traceback at a failure
])
def test_the_pytest_plugin_refuses_bad_options_before_running(args, named, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                          "npegg.conformance.pytest_plugin", "--conformance-backend", BROKEN, *args],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == pytest.ExitCode.USAGE_ERROR and named in out.stderr, out.stdout[-2000:] + out.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_saved_case_round_trips_without_pickle(tmp_path):
    case = {"x": np.arange(3, dtype=np.float32), "sigma": 0.5, "optimizer": "adam", "nesterov": True}
    op, back = runner.load_case(runner.save_case(tmp_path / "c.npz", "sgd", case))
    assert op == "sgd" and back["sigma"] == 0.5 and back["optimizer"] == "adam" and back["nesterov"] is True
    assert np.array_equal(back["x"], case["x"]) and back["x"].dtype == np.float32
