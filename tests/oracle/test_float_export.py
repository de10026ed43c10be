"""Round trip of the float oracle export: npegg's own float vectors pass npegg's float parity checks."""
import numpy as np
import pytest

from npegg.oracle.float_vectors import CASES, export_float_vectors
from parity import load
from test_float_parity import check_fitness_units, check_float_eggroll
from core.test_noise import test_noise_reuse_pattern_matches_reference  # tests/ is on sys.path


def test_exported_float_vectors_pass_the_parity_checks(tmp_path):
    path = export_float_vectors(tmp_path / "float_eggroll_npegg.npz")
    check_float_eggroll(path)
    check_fitness_units(path)
    test_noise_reuse_pattern_matches_reference(path)
    v = load(path)
    assert list(v["meta/cases"]) == [c[0] for c in CASES]
    # the file is not trivial: params move, and the sign of the antithetic pair is in A
    assert not np.array_equal(v["r1_g0_sgd/step2/param/0/weight"], v["param0/0/weight"])
    a = v["r1_g0_sgd/step0/noise/0/weight/A"]
    np.testing.assert_array_equal(a[0], -a[1])


def test_cli_export_vectors_writes_both_kinds_and_never_overwrites(tmp_path, capsys):
    from npegg.program.cli import main
    out = tmp_path / "vectors"
    assert main(["export-vectors", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "float_eggroll_npegg.npz" in names and any(n.startswith("egg_fwd_") for n in names)
    assert any(n.startswith("qegg_update") for n in names)
    assert {"float_lm_egg.npz", "float_lm_mingru.npz"} <= set(names)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["export-vectors", str(out)]) == 2                         # not empty: refused
    assert "not an empty folder" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_parity_check_passes_large_steps_and_reports_every_differing_stage(tmp_path):
    """The parity check (what NPEGG_PARITY_DIR files go through) passes npegg's own export at lr 0.5,
    σ 0.5 over 4 AdamW steps, and on a copy with two stages changed (an output of step 0, a new
    parameter of step 2) fails once, naming both."""
    from npegg.program.cli import main
    assert main(["export-vectors", str(tmp_path / "v"), "--kinds", "float", "--lr", "0.5", "--sigma", "0.5",
                 "--optimizer", "adamw", "--steps", "4"]) == 0
    path = tmp_path / "v" / "float_eggroll_npegg.npz"
    check_float_eggroll(path)
    v = load(path)
    v["r1_g0_adamw/step0/y"][2, 0] += 1e-2
    v["r4_g4_adamw/step2/new/1/weight"][3, 3] += 1e-2
    bad = tmp_path / "bad" / "float_eggroll_npegg.npz"
    bad.parent.mkdir()
    np.savez_compressed(bad, **v)
    with pytest.raises(AssertionError) as e:
        check_float_eggroll(bad)
    msg = str(e.value)
    assert "2 of " in msg and "r1_g0_adamw/step0/y[2, 0]" in msg and "r4_g4_adamw/step2/new/1/weight[3, 3]" in msg, msg
