"""`npegg export-vectors` takes the shapes, population, learning rate and optimizer to export;
every flag is checked before any work; a full disk leaves nothing behind and the same command
simply runs again."""
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from npegg.program.cli import main
from parity import load
from test_check_vectors import run


def test_the_flags_reach_every_file_and_the_files_pass_the_checker(tmp_path):
    out = tmp_path / "v"
    assert main(["export-vectors", str(out), "--pop", "12", "--lr", "0.05", "--optimizer", "adamw",
                 "--width", "24", "--layers", "1", "--seq-len", "6", "--mlp", "4,16,3", "--rank", "2",
                 "--steps", "2", "--sigma", "0.2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["egg_fwd_h24_l1_adv.npz", "egg_fwd_h24_l1_init.npz", "float_eggroll_npegg.npz",
                     "float_lm_egg.npz", "float_lm_mingru.npz", "qegg_update_npegg.npz"]
    fwd = load(out / "egg_fwd_h24_l1_init.npz")
    assert (int(fwd["meta/hidden"]), int(fwd["meta/n_layer"]), int(fwd["meta/T"]), int(fwd["meta/rank"])) == (24, 1, 6, 2)
    assert list(fwd["pert/threads"][:12]) == list(range(12)) and int(fwd["format_version"]) == 1
    upd = load(out / "qegg_update_npegg.npz")
    assert all(int(upd[f"{c}/pop"]) == 12 for c in upd["meta/cases"])
    mlp = load(out / "float_eggroll_npegg.npz")
    assert (int(mlp["meta/in_dim"]), list(mlp["meta/hidden_dims"]), int(mlp["meta/out_dim"]), int(mlp["meta/pop"])) == \
        (4, [16], 3, 12)
    assert list(mlp["meta/cases"]) == ["r2_g0_adamw", "r2_g4_adamw", "r2_g0_adamw_2", "r2_g4_adamw_2",
                                       "r2_g0_adamw_freeze", "r2_g0_adamw_reuse0"]
    assert all(float(mlp[f"{c}/lr"]) == 0.05 and float(mlp[f"{c}/sigma"]) == 0.2 for c in mlp["meta/cases"])
    assert mlp["r2_g4_adamw/step1/adam/mu/0/weight"].shape == (16, 4)
    lm = load(out / "float_lm_mingru.npz")
    assert (int(lm["meta/hidden_dim"]), int(lm["meta/pop"]), str(lm["meta/optimizer"]), float(lm["meta/lr"])) == \
        (24, 12, "adamw", 0.05)
    rc, text = run(out)
    assert rc == 0 and text.count("ok  ") == 6, text


def test_kinds_picks_the_files(tmp_path):
    assert main(["export-vectors", str(tmp_path / "v"), "--kinds", "float", "--steps", "1"]) == 0
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["float_eggroll_npegg.npz"]


@pytest.mark.parametrize("flag, value, words", [
    ("--pop", "6", "--pop must be a multiple of 4"), ("--pop", "0", "--pop must be an integer in [4, 4096]"),
    ("--optimizer", "rmsprop", "--optimizer must be one of sgd, adam, adamw"),
    ("--mlp", "3", "--mlp must be widths IN,H…,OUT"), ("--mlp", "3,x,2", "--mlp must be widths"),
    ("--kinds", "int8,fp8", "--kinds must be a comma-separated list of int8, float, lm"),
    ("--lr", "nan", "--lr must be a number in (0, 100]"), ("--sigma", "-1", "--sigma must be a number"),
    ("--width", "0", "--width must be an integer in [1, 1024]"), ("--steps", "1000", "--steps must be"),
])
def test_a_bad_flag_is_refused_before_any_work(tmp_path, capsys, flag, value, words):
    out = tmp_path / "v"
    assert main(["export-vectors", str(out), flag, value]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()                                              # refused before the folder is made


def _tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``; False where this machine does not allow it (not root)."""
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_leaves_nothing_and_the_rerun_works(tmp_path):
    """Probe: on a full disk the export left a 0-byte file, which made the rerun refuse the folder.
    Now every file is written atomically and a failed set is removed: exit 1, one line, an empty
    folder, and the same command runs again once there is room. A real full disk: a 700 kB tmpfs
    where the machine allows mounting one, else a 200 kB limit per file (RLIMIT_FSIZE)."""
    disk = tmp_path / "disk"
    mounted = _tmpfs(disk, "700k")
    out = disk / "v"
    cmd = [sys.executable, "-m", "npegg", "export-vectors", str(out), "--kinds", "int8,float"]

    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 << 10, 200 << 10))   # per file: below the largest
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=None if mounted else limit)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1 and "cannot write the vectors" in p.stderr, p.stderr
        assert ("No space left on device" if mounted else "File too large") in p.stderr, p.stderr
        assert list(out.iterdir()) == [] and p.stdout == ""             # nothing partial, no listed file
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert sorted(x.name for x in out.iterdir()) == sorted(line.rsplit("/", 1)[1] for line in p.stdout.split())
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)])


def test_large_steps_pass_the_checker(tmp_path):
    """At lr 0.5 and σ 0.5, over 4 Adam steps, parameters and outputs grow and results far smaller
    than their terms appear: the checker's bound (terms-scaled, docs/vectors.md) passes npegg's
    float32 files, whose Adam is optax's arithmetic; a tolerance relative to the result alone, or
    an Adam with the exact bias correction, did not (issue 18)."""
    out = tmp_path / "v"
    assert main(["export-vectors", str(out), "--kinds", "float,lm", "--lr", "0.5", "--sigma", "0.5",
                 "--optimizer", "adam", "--steps", "4", "--pop", "8"]) == 0
    rc, text = run(out)
    assert rc == 0 and text.count("ok  ") == 3, text
