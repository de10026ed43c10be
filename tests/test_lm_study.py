"""The LM study benchmark in its tiny setting: rows run, land in the results file and the table, and a
rerun resumes (nothing is run twice, nothing is lost)."""
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = ["ref", "T25", "bp-data", "bp-cpu", "es-full", "full-nodirect"]


def study(tmp_path, *extra):
    cmd = [sys.executable, "-m", "benchmarks.lm_study", "--small", "--results", str(tmp_path / "r.jsonl"),
           "--table", str(tmp_path / "t.md"), *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_small_study_writes_rows_and_resumes(tmp_path):
    study(tmp_path, "--only", ",".join(ROWS))
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    recs = {r["name"]: r for r in map(json.loads, lines)}
    assert set(recs) == set(ROWS) and len(lines) == len(ROWS)
    for r in recs.values():
        assert math.isfinite(r["valid_bpb"]) and 0 < r["valid_bpb"] < 12 and r["cpu_s"] > 0, r
    # equal data: backprop reads exactly the reference row's bytes; ES pushes g = 4 times as many through the model
    assert recs["bp-data"]["data_bytes"] == recs["ref"]["data_bytes"]
    assert recs["ref"]["member_bytes"] == 4 * recs["ref"]["data_bytes"]
    # equal compute, up to rounding the epochs: within one epoch of P·T = 64·25 member-bytes
    assert abs(recs["T25"]["member_bytes"] - recs["ref"]["member_bytes"]) <= 64 * 25
    table = (tmp_path / "t.md").read_text()
    assert all(f"| {n} |" in table for n in ROWS)
    # the full-length rows are the defaults with one thing changed back, Δ against es-full
    assert recs["full-nodirect"]["config"]["direct_path"] is False and recs["es-full"]["config"]["direct_path"]
    full = table.split("## Full length")[1].split("##")[0]
    delta = recs["full-nodirect"]["valid_bpb"] - recs["es-full"]["valid_bpb"]
    assert f"| full-nodirect |" in full and f"{delta:+.3f} |" in full
    out = study(tmp_path, "--only", ",".join(ROWS))                             # resume: nothing to do
    assert (tmp_path / "r.jsonl").read_text().splitlines() == lines and "valid" not in out.split("| group")[0]


def test_unknown_row_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.lm_study", "--small", "--only", "nope",
                           "--results", str(tmp_path / "r.jsonl")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--only" in proc.stderr and not (tmp_path / "r.jsonl").exists()
