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


def run(*args, limit_bytes=None):
    """(exit status, stdout + stderr) of the checker on ``args``; ``limit_bytes`` caps its address space."""
    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600,
                         preexec_fn=cap if limit_bytes else None)
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


def _checker_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_vectors", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_shape_mismatch_in_the_replay_says_shape_mismatch():
    """Probe: a replayed array of another shape was reported as "0 of 6144 entries differ"."""
    cv = _checker_module()
    c = cv.Checker("f.npz")
    want = {"k": np.zeros((96, 64), np.int8), "x": np.zeros((4, 2))}
    c.exact(np.zeros((64, 96)), want, "k")
    c.close(np.zeros((4, 3)), want, "x", 1e-5, 1e-6)
    assert c.diffs == ["f.npz: k: shape mismatch: got (64, 96), expected (96, 64)",
                       "f.npz: x: shape mismatch: got (4, 3), expected (4, 2)"]


def test_every_differing_stage_is_reported_and_own_intermediates_can_be_fed(tmp_path):
    """Two stages changed in one file (an output of step 0, the fitness of step 1): both reported.
    Fed the file's own fitness (default), the changed fitness also moves every gradient of that step
    (the file's gradients were made from the true one); fed the replay's own (--feed own), only the
    fitness differs: the stage that went wrong is the one reported."""
    bad = tmp_path / "bad"
    bad.mkdir()
    v = load(REFERENCE_DIR / "float_eggroll.npz")
    v["r1_g0_sgd/step0/y"][3, 1] += 1e-3
    v["r1_g0_sgd/step1/fitness"] *= np.float32(1.01)
    np.savez_compressed(bad / "float_eggroll.npz", **v)
    rc, out = run("--feed", "recorded", bad)
    lines = [l for l in out.splitlines() if l.startswith("MISMATCH")]
    assert rc == 1 and "r1_g0_sgd/step0/y[3, 1]" in lines[0] and "r1_g0_sgd/step1/fitness[0]" in lines[1], out
    assert len(lines) == 8 and all("r1_g0_sgd/step1/grad/" in l for l in lines[2:]), out
    assert "FAILED        " in out and "(8 of 240 arrays differ)" in out, out
    rc, out = run("--feed", "own", bad)
    lines = [l for l in out.splitlines() if l.startswith("MISMATCH")]
    assert rc == 1 and len(lines) == 2 and "step0/y[3, 1]" in lines[0] and "step1/fitness[0]" in lines[1], out


def test_a_bad_flag_is_usage():
    assert run("--feed", "mine", REFERENCE_DIR)[0] == 2
    assert run("--max-mb", "0", REFERENCE_DIR)[0] == 2


def test_float_bounds_scale_with_the_terms_not_the_result():
    """The two tolerance misses of issue 18, rebuilt: (1) an MLP output near 0.08 made of terms near
    700, computed in float32, is within the bound scaled by the terms' absolute sum, and was not
    within one scaled by the result; (2) equal raw scores have fitness 0 exactly, a float32
    z-score gives a few ulps of R / √1e-5, within the bound scaled by (|R| + |mean|)/std. A real
    error (1e-3 of the terms) still fails."""
    cv = _checker_module()
    rng = np.random.default_rng(0)
    x = rng.uniform(20, 30, (8, 4))
    w = rng.uniform(4, 6, (2, 4))
    b = -(x[0] @ w.T) + 0.08                                    # member 0's outputs are 0.08 out of ~700
    p = {"0/weight": w, "0/bias": b}
    y64, terms = cv.mlp_forward(x, p, {}, ["0"], False, False)
    y32 = x.astype(np.float32) @ w.astype(np.float32).T + b.astype(np.float32)
    assert np.abs(terms[0][0]).min() > 600 and np.allclose(y64[0], 0.08)
    v = {"y": y32}
    for scale, fails in ((terms, 0), (None, 1)):
        c = cv.Checker("f")
        c.close(y64, v, "y", 2e-5, 2e-6, scale)
        assert len(c.diffs) == fails, c.diffs
    c = cv.Checker("f")
    c.close(y64 + 1e-3 * terms[0], v, "y", 2e-5, 2e-6, terms)
    assert len(c.diffs) == 1
    raw = np.full(8, 1234.567, np.float32)
    from npegg.noiser import EggRoll
    frozen, nparams = EggRoll.init_noiser({}, 1.0, 0.1)
    mean32 = raw.mean(dtype=np.float32) + np.float32(1e-4)      # a float32 mean a few ulps off, as a port's may be
    fit32 = ((raw - mean32) / np.sqrt(raw.var() + np.float32(1e-5))).astype(np.float32)
    fit, scale = cv.zscore(raw, 0)
    assert np.array_equal(fit, np.zeros(8)) and np.abs(fit32).max() > 1e-2
    c = cv.Checker("f")
    c.close(fit, {"f": fit32}, "f", 1e-5, 1e-5, scale)
    c.close(fit, {"f": EggRoll.convert_fitnesses(frozen, nparams, raw)}, "f", 1e-5, 1e-5, scale)
    assert c.diffs == []
    c.close(fit, {"f": fit32}, "f", 1e-5, 1e-5)
    assert len(c.diffs) == 1
