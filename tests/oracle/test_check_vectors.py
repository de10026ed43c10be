"""examples/check_vectors.py, the stand-alone checker a port copies: it passes the reference's
vectors and npegg's own exports, and fails a corrupted copy with the key and index of the change."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity import REFERENCE_DIR, load

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "check_vectors.py"


def run(*dirs):
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, dirs)], capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout + out.stderr


def test_reference_vectors_pass():
    rc, out = run(REFERENCE_DIR)
    assert rc == 0, out
    replayed = [line for line in out.splitlines() if line.startswith("ok")]
    assert len(replayed) == len([p for p in REFERENCE_DIR.glob("*.npz")
                                 if not p.name.startswith(("int8_units", "qegg_thresholds"))]), out


def test_npeggs_own_exports_pass(tmp_path):
    from npegg.program.cli import main
    assert main(["export-vectors", str(tmp_path / "v")]) == 0
    rc, out = run(tmp_path / "v")
    assert rc == 0, out
    assert "float_lm_egg.npz" in out and "float_lm_mingru.npz" in out


@pytest.mark.parametrize("name, key, index, delta", [
    ("float_eggroll.npz", "r4_g4_sgd/step2/new/1/weight", (3, 5), 1e-3),
    ("egg_fwd_h16_l1_adv.npz", "pert/state", (2, 40, 0, 7), 1),
    ("qegg_update.npz", "u3/new/head", (100, 3), 1),
])
def test_a_corrupted_copy_fails_at_the_changed_entry(tmp_path, name, key, index, delta):
    bad = tmp_path / "bad"
    bad.mkdir()
    v = load(REFERENCE_DIR / name)
    v[key][index] = v[key][index] + np.asarray(delta, v[key].dtype)
    np.savez_compressed(bad / name, **v)
    shutil.copy(REFERENCE_DIR / "qegg_fitness.npz", bad)          # a passing file beside it
    rc, out = run(bad)
    assert rc == 1, out
    assert f"MISMATCH      {name}: {key}{list(index)}" in out, out


def test_usage_errors_exit_2(tmp_path):
    assert run()[0] == 2
    assert run(tmp_path)[0] == 2                                   # no vector files
    assert run(tmp_path / "missing")[0] == 2


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_file_is_reported_by_name_not_a_traceback(tmp_path, damage):
    """One flipped byte (the zip's CRC catches it) or a file cut short: exit 1 with a DAMAGED line
    naming the file, no traceback."""
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(REFERENCE_DIR / "qegg_fitness.npz", bad)
    b = bytearray((REFERENCE_DIR / "qegg_fitness.npz").read_bytes())
    if damage == "flip":
        b[len(b) // 2] ^= 0x01
    else:
        del b[100:]
    (bad / "qegg_fitness.npz").write_bytes(bytes(b))
    rc, out = run(bad)
    assert rc == 1, out
    assert f"DAMAGED       {bad / 'qegg_fitness.npz'}:" in out and "Traceback" not in out, out
