"""docs/conformance.md's scoreboard is what ``python -m npegg.conformance.scoreboard`` makes of the
committed results (docs/conformance.json), and lists every implementation of the adapters file
with the operations it claims today. (The statuses themselves are re-checked by the runs in
test_kit.py and test_jax_reference.py.)"""
import json
import subprocess
import sys
from pathlib import Path

from npegg.conformance import scoreboard
from npegg.conformance.protocol import EXACT, NOT_CLAIMED, OPERATIONS, load_adapter

REPO = Path(__file__).resolve().parents[2]
DOC, RESULTS, ADAPTERS = REPO / "docs" / "conformance.md", REPO / "docs" / "conformance.json", \
    REPO / "tests" / "conformance" / "adapters.txt"


def _reports():
    return json.loads(RESULTS.read_text())


def test_the_scoreboard_block_is_what_the_results_render_to():
    text = DOC.read_text()
    block = scoreboard.BEGIN + text.split(scoreboard.BEGIN, 1)[1].split(scoreboard.END, 1)[0] + scoreboard.END
    assert block == scoreboard.render(_reports()), f"regenerate with `{scoreboard.COMMAND} --render-only`"


def test_every_listed_implementation_is_on_the_scoreboard_with_its_claims():
    reports = {r["backend"]: r for r in _reports()}
    for spec, _ in scoreboard.read_adapters_file(ADAPTERS):
        if spec.startswith("json:"):                       # rows computed elsewhere: carried over verbatim
            row = json.loads((REPO / spec[5:]).read_text())
            assert row in _reports(), f"{spec} differs from its copy in {RESULTS.name}: rerun {scoreboard.COMMAND}"
            continue
        assert spec in reports, f"{spec} is in {ADAPTERS.name} but not in {RESULTS.name}: rerun {scoreboard.COMMAND}"
        mod, attr = spec.split(":")
        claims = load_adapter(f"{REPO / mod}:{attr}" if mod.endswith(".py") else spec).claims
        listed = {op for op, row in reports[spec]["operations"].items() if row["status"] != NOT_CLAIMED}
        assert listed == set(claims), spec
        assert set(reports[spec]["operations"]) == set(OPERATIONS), spec


def test_npegg_is_exact_on_every_operation_of_its_own_row():
    row = next(r for r in _reports() if r["adapter"] == "npegg")
    assert all(r["status"] == EXACT and r["cases"] == row["max_examples"] for r in row["operations"].values())


def test_the_scoreboard_command_refuses_bad_arguments_by_name(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "npegg.conformance.scoreboard", *a], capture_output=True,
                                    text=True, cwd=REPO, timeout=300)
    for args, named in [(["--adapters", str(tmp_path / "none.txt")], "--adapters"),
                        (["--max-examples", "0"], "--max-examples"),
                        (["--doc", str(tmp_path / "none.md")], "--doc")]:
        out = run(*args)
        assert out.returncode == 2 and named in out.stderr and "Traceback" not in out.stderr, out.stderr
