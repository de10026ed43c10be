"""The benchmark command runs end to end and writes well-formed rows (no timing is asserted)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GROUPS = ("roofline", "population forward", "ES update", "OpenES vs EggRoll", "language model", "minGRU scan", "int8",
          "workers", "npegg train")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_run_writes_every_group(quick_run):
    """Every group of the table is present, measured or skipped with a reason."""
    doc, _ = quick_run
    assert {r["group"] for r in doc["rows"]} == set(GROUPS)
    assert all(r["skipped"] or r["ratio"] is not None for r in doc["rows"])


def test_measured_rows_have_positive_finite_ratios_and_inputs(quick_run):
    """A measured row is a positive finite ratio with its inputs and per-repeat times."""
    doc, _ = quick_run
    measured = [r for r in doc["rows"] if not r["skipped"]]
    assert measured
    for r in measured:
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r["key"]
        assert r["inputs"], r["key"]
        if "times_a_s" in r["timing"]:
            assert len(r["timing"]["times_a_s"]) == len(r["timing"]["times_b_s"]) == r["timing"]["repeats"] >= 3


def test_float_core_rows_are_never_skipped(quick_run):
    """The float-core groups need nothing but npegg's core, so they always run."""
    doc, _ = quick_run
    core = [r for r in doc["rows"] if r["group"] in GROUPS[:4]]
    assert core and not any(r["skipped"] for r in core)


def test_table_is_printed(quick_run):
    _, stdout = quick_run
    assert "ratio" in stdout and "target" in stdout and "wrote" in stdout


def test_bad_group_is_an_error():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown group" in proc.stderr


@pytest.mark.parametrize("D,L,m,direct", [(32, 2, 0, True), (16, 1, 4, False), (8, 3, 1, True)])
def test_roofline_flops_per_byte_is_the_formula(D, L, m, direct):
    """The roofline's F counts each weight matrix once: L·(2·2·D² + 2·2·m·D²) + 2·D·V; embedding
    tables, norms and biases add nothing (benchmarks/rows_roofline.py)."""
    from benchmarks.rows_roofline import VOCAB, matmul_flops_per_byte
    from npegg.es import ES
    from npegg.models.lm import ByteLM
    es, state = ES.create(ByteLM, dict(hidden_dim=D, n_layers=L, cell="mingru", mlp_ratio=m, direct_path=direct),
                          pop_size=2, sigma=0.1, lr=0.1, seed=0)
    assert matmul_flops_per_byte(state.params, es.es_map) == L * (4 * D * D + 4 * m * D * D) + 2 * D * VOCAB
