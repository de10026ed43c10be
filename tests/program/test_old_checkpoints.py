"""Checkpoints written before the layout change still resume: int runs bit for bit, float runs to
the old code's result within float32 rounding.

The fixtures in ``fixtures/pre_move/`` were written by the code at commit f7c4768 (before the
program moved to ``npegg/program/``), with ``fixtures/pre_move/README.md``'s commands: a float
and an int run stopped after 2 of 4 epochs, and the parameters and recurrent states that an
uninterrupted 4-epoch run of that same code reached (``epoch4_expected.npz``).

Whoever changes the checkpoint format (e.g. adding a manifest) must keep this test passing:
either old checkpoints still load and resume, or ``npegg train --resume`` exits 1 with a message
that names the format change (then change the assertion to that message, and keep the fixture).

The float model's arithmetic has changed since f7c4768 in one place: the minGRU's recurrence runs
as a loop over time instead of the Hillis–Steele scan (faster on a CPU), which rounds h_t in
another order. So the float run must reach the old 4-epoch params and states to within 4 float32
ulps of each leaf's largest entry (the measured difference is ≤ 1 ulp); a resume that lost
anything (optimizer state, data position, hidden states, the epoch) would be off by what two
epochs move the leaves, 2e-4 to 1e-3 here, hundreds of times more. The int path has not changed
and must match bit for bit.
"""
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from npegg.program import cli
from npegg.program.checkpoint import load_checkpoint
from npegg.tree import flatten

FIXTURES = Path(__file__).parent / "fixtures" / "pre_move"


@pytest.mark.parametrize("mode", ["float", "int"])
def test_pre_move_checkpoint_resumes_to_the_old_result(tmp_path, mode):
    """Resuming the old 2-epoch run to epoch 4 reaches the old code's own 4-epoch params and states
    (int: the same bits; float: within 4 ulps, module docstring)."""
    run_dir = tmp_path / f"{mode}_run"
    shutil.copytree(FIXTURES / f"{mode}_epoch2", run_dir)          # never write into the fixture
    buf = io.StringIO()
    code = cli.main(["train", "--resume", str(run_dir), "--epochs", "4", "--data", str(FIXTURES / "corpus")],
                    stdout=buf)
    assert code == 0, buf.getvalue()
    assert "resuming at epoch 2" in buf.getvalue()
    ckpt = load_checkpoint(run_dir / "checkpoint.npz")
    assert ckpt.scalars["epoch"] == 4
    expected = np.load(FIXTURES / "epoch4_expected.npz")
    keys = [k for k in expected.files if k.startswith(mode + "/")]
    assert keys
    for key in keys:
        _, tree, leaf = key.split("/", 2)
        got, want = flatten(ckpt.trees[tree])[leaf], expected[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if mode == "int":
            assert np.array_equal(got, want), key
        else:
            ulps = 4 * np.finfo(np.float32).eps * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=ulps, err_msg=key)
