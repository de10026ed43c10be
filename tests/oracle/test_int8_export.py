"""Round trip of the oracle export: npegg's own golden vectors pass npegg's parity checks.

The files are written to a temporary folder and read back by the very functions that check
the reference's vectors (``check_egg_fwd``, ``check_qegg_update``), so the format is the same
and the recorded noise alone reproduces every output.
"""
from __future__ import annotations

import numpy as np
import pytest

from npegg.oracle.int8_vectors import export_int8_vectors
from parity import load
from test_int8_parity import check_egg_fwd, check_qegg_update


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_int8_vectors(tmp_path_factory.mktemp("vectors"))


def test_exported_forward_vectors_pass_the_parity_checks(exported):
    """Every exported egg_fwd file: base and perturbed forward from the injected noise, start indices."""
    fwd = [p for p in exported if p.name.startswith("egg_fwd_")]
    assert fwd
    for path in fwd:
        check_egg_fwd(path)


def test_exported_update_vectors_pass_the_parity_checks(exported):
    """The exported qegg_update file: fitness, threshold from α, start indices, Z and new params."""
    upd = [p for p in exported if p.name.startswith("qegg_update")]
    assert len(upd) == 1
    check_qegg_update(upd[0])


def test_exported_vectors_exercise_the_quirks(exported):
    """The files contain what makes them useful: clamped slices, resets, ties, τ = 0, odd threads."""
    fwd = load(next(p for p in exported if p.name.startswith("egg_fwd_")))
    assert fwd["meta/clamp_threads"].size == 2
    assert np.any(fwd["noise/emb/start"] != fwd["noise/emb/start_clamped"])
    assert np.any(fwd["pert/tokens_in"] == 0) and np.any(fwd["pert/threads"] % 2 == 1)
    upd = load(next(p for p in exported if p.name.startswith("qegg_update")))
    assert int(upd["u0/update_threshold"]) == 0
    assert np.any(upd["u0/fitness"] == 0)


def test_the_parity_check_reports_every_differing_array(tmp_path):
    """A copy of the reference's update file with two arrays changed (u1's Z of one leaf, u3's new
    head) fails once, naming both, with their first differing index."""
    from parity import REFERENCE_DIR
    v = load(REFERENCE_DIR / "qegg_update.npz")
    v["u1/Z/blocks/att/bf"][1, 5] += 3
    v["u3/new/head"][100, 3] += 1
    bad = tmp_path / "qegg_update.npz"
    np.savez_compressed(bad, **v)
    with pytest.raises(AssertionError) as e:
        check_qegg_update(bad)
    msg = str(e.value)
    assert "2 of " in msg and "u1/Z/blocks/att/bf[1, 5]" in msg and "u3/new/head[100, 3]" in msg, msg
