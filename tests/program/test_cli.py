"""The ``npegg`` command end to end, in process, on a tiny corpus: train, resume, sample, eval, errors."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npegg.program import cli
from npegg.program.checkpoint import load_checkpoint, save_checkpoint
from npegg.tree import flatten
from npegg.program.shard import ParallelRun

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
         "every jovial number in the box of import numpy as np def return").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of 14 small text documents (~2.5 kB in all)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(14):
        text = " ".join(rng.choice(WORDS, 30)) + ".\n"
        (root / f"doc{i:02d}.txt").write_text(text)
    return root


def tiny(corpus, out, *extra):
    return ["train", "--data", str(corpus), "--hidden-dim", "8", "--n-layers", "1", "--pop-size", "8",
            "--tokens-per-update", "16", "--epochs", "4", "--eval-every", "2", "--sample-bytes", "20",
            "--out", str(out), *extra]


def run(argv):
    buf = io.StringIO()
    code = cli.main([str(a) for a in argv], stdout=buf)
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """An uninterrupted 4-epoch run: (run folder, stdout)."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    code, text = run(tiny(corpus, out))
    assert code == 0, text
    return out, text


def _same_run(a: Path, b: Path):
    ca, cb = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    assert ca.scalars["epoch"] == cb.scalars["epoch"] == 4
    for tree in ("params", "opt_state", "hidden", "data"):
        fa, fb = flatten(ca.trees[tree]), flatten(cb.trees[tree])
        assert fa.keys() == fb.keys()
        for k in fa:
            assert np.array_equal(fa[k], fb[k]), f"{tree}/{k}"
    ma, mb = (json.loads((p / "metrics.json").read_text())["history"] for p in (a, b))
    assert ma["epoch"] == mb["epoch"] and ma["train_bpb"] == mb["train_bpb"] and ma["valid_bpb"] == mb["valid_bpb"]


def test_train_writes_the_run_folder(straight):
    out, text = straight
    for name in ("checkpoint.npz", "metrics.csv", "metrics.json", "sample.txt"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["result"]["epoch"] == 4 and np.isfinite(m["result"]["valid_bpb"])
    assert set(m["baselines"]) == {"uniform", "unigram", "bigram", "gzip", "lzma"}
    assert m["history"]["epoch"] == [0, 1, 2, 3, 4]
    assert (out / "metrics.csv").read_text().splitlines()[0] == "epoch,train_bpb,valid_bpb,seconds"
    for word in ("corpus", "unigram", "lzma", "epoch 4/4", "npegg float/mingru, epoch 4"):
        assert word in text
    assert ("curve.png" in text) == (out / "curve.png").is_file()


@pytest.mark.parametrize("cell", ["egg", "mingru"])
def test_resume_continues_bit_for_bit(corpus, tmp_path, capsys, cell):
    """2 epochs, then --resume to 4 = 4 straight: params, optimizer, states, reader, metrics.

    Extending a run is only possible with constant schedules (a decay is planned over --epochs).
    """
    constant = ("--lr-schedule", "constant", "--cell", cell)
    straight4, out = tmp_path / "straight", tmp_path / "split"
    assert run(tiny(corpus, straight4, *constant))[0] == 0
    assert run(tiny(corpus, out, "--epochs", "2", *constant))[0] == 0
    code, text = run(["train", "--resume", out, "--epochs", "4"])
    assert code == 0, text
    assert "resuming at epoch 2" in text
    _same_run(straight4, out)
    decaying = tmp_path / "cosine"
    assert run(tiny(corpus, decaying, "--epochs", "2"))[0] == 0
    code, _ = run(["train", "--resume", decaying, "--epochs", "4"])
    assert code == 2 and "--epochs must stay 2" in capsys.readouterr().err


def test_interrupt_saves_and_resume_continues(corpus, straight, tmp_path, monkeypatch):
    """Ctrl-C during epoch 3 saves epoch 2 and exits 130; --resume then matches the straight run."""
    out, calls = tmp_path / "interrupted", []
    real = ParallelRun.epoch_step

    def flaky(self):
        calls.append(self.epoch)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(ParallelRun, "epoch_step", flaky)
    code, text = run(tiny(corpus, out))
    assert code == 130 and "--resume" in text
    assert load_checkpoint(out / "checkpoint.npz").scalars["epoch"] == 2
    monkeypatch.setattr(ParallelRun, "epoch_step", real)
    assert run(["train", "--resume", out])[0] == 0
    _same_run(straight[0], out)


def test_sample_and_eval(straight, corpus, tmp_path):
    out = straight[0]
    code, text = run(["sample", out, "--prompt", "the ", "--length", "40", "--seed", "3"])
    assert code == 0 and text.startswith("the ")
    assert run(["sample", out, "--prompt", "the ", "--length", "40", "--seed", "3"])[1] == text
    code, text = run(["eval", out])
    final = json.loads((out / "metrics.json").read_text())["result"]["valid_bpb"]
    assert code == 0 and f"bpb {final:.4f}" in text
    other = tmp_path / "other.txt"
    other.write_text("a completely different text, " * 20)
    code, text = run(["eval", out, "--data", other])
    assert code == 0 and "(all)" in text


BAD_FLAGS = [
    (["--pop-size", "7"], "--pop-size"), (["--group-size", "3"], "--group-size"),
    (["--group-size", "16"], "--group-size"), (["--rank", "0"], "--rank"), (["--sigma", "0"], "--sigma"),
    (["--sigma", "-1"], "--sigma"), (["--epochs", "0"], "--epochs"), (["--lr", "0"], "--lr"),
    (["--optimizer", "rmsprop"], "--optimizer"), (["--cell", "lstm"], "--cell"), (["--mode", "int", "--lr", "0.1"], "--lr"),
    (["--mode", "int", "--cell", "mingru"], "--cell"), (["--alpha", "2"], "--alpha"), (["--epochs", "x"], "--epochs"),
]


@pytest.mark.parametrize("extra,flag", BAD_FLAGS, ids=[f[1] + str(i) for i, f in enumerate(BAD_FLAGS)])
def test_bad_flags_exit_2_before_training(corpus, tmp_path, capsys, extra, flag):
    out = tmp_path / "never"
    code, _ = run(tiny(corpus, out, *extra))
    err = capsys.readouterr().err
    assert code == 2 and flag in err, err
    assert not out.exists()


@pytest.mark.parametrize("make,what", [
    (lambda p: p / "missing.txt", "no such file"),
    (lambda p: (p / "empty.txt").write_bytes(b"") and None or p / "empty.txt", "empty"),
    (lambda p: (p / "x.npy").write_bytes(b"not numpy") and None or p / "x.npy", "cannot read"),
])
def test_bad_data_exit_1_with_the_path(tmp_path, capsys, make, what):
    path = make(tmp_path)
    code, _ = run(tiny(path, tmp_path / "never"))
    err = capsys.readouterr().err
    assert code == 1 and str(path.name) in err and what in err, err
    assert not (tmp_path / "never").exists()


def test_existing_run_folder_is_never_overwritten(corpus, straight, capsys):
    out = straight[0]
    before = (out / "checkpoint.npz").read_bytes()
    code, _ = run(tiny(corpus, out))
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "checkpoint.npz").read_bytes() == before


def test_resume_refuses_another_model_and_corrupt_files(straight, tmp_path, capsys):
    code, _ = run(["train", "--resume", straight[0], "--hidden-dim", "16"])
    err = capsys.readouterr().err
    assert code == 2 and "--hidden-dim: checkpoint 8, command line 16" in err
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes((straight[0] / "checkpoint.npz").read_bytes()[:500])
    code, _ = run(["train", "--resume", bad])
    assert code == 1 and "corrupt" in capsys.readouterr().err
    code, _ = run(["sample", tmp_path / "nothing"])
    assert code == 1 and "no such checkpoint" in capsys.readouterr().err
    foreign = tmp_path / "foreign.npz"
    save_checkpoint(foreign, {"params": {"w": np.zeros(3)}})
    code, _ = run(["train", "--resume", foreign])
    assert code == 1 and "not written by `npegg train`" in capsys.readouterr().err


def test_int_mode_trains_and_resumes_bit_for_bit(corpus, tmp_path):
    straight, split = tmp_path / "int4", tmp_path / "int2"
    code, text = run(tiny(corpus, straight, "--mode", "int", "--hidden-dim", "16"))
    assert code == 0, text
    assert "int mode" in text and "npegg int/egg, epoch 4" in text
    assert run(tiny(corpus, split, "--mode", "int", "--hidden-dim", "16", "--epochs", "2"))[0] == 0
    assert run(["train", "--resume", split, "--epochs", "4"])[0] == 0
    ca, cb = (load_checkpoint(p / "checkpoint.npz") for p in (straight, split))
    for tree in ("params", "hidden", "data"):
        fa, fb = flatten(ca.trees[tree]), flatten(cb.trees[tree])
        assert all(np.array_equal(fa[k], fb[k]) for k in fa) and fa.keys() == fb.keys()
    assert ca.trees["params"]["head"].dtype == np.int8
    assert run(["sample", straight, "--length", "10"])[0] == 0


def test_python_m_npegg_help():
    r = subprocess.run([sys.executable, "-m", "npegg", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "train" in r.stdout and "sample" in r.stdout


def test_curve_is_skipped_without_matplotlib(straight, monkeypatch):
    """No matplotlib: plot_curve returns None (the CLI then prints a one-line note) instead of failing."""
    from npegg.program.report import plot_curve
    from npegg.program.loop import History
    monkeypatch.setitem(sys.modules, "matplotlib", None)            # `import matplotlib` now raises ImportError
    h = History([0, 1], [float("nan"), 7.0], [8.0, 7.5], [0.0, 1.0])
    assert plot_curve(straight[0] / "never.png", h, {"uniform": 8.0, "unigram": 5.0}, "t") is None
    assert not (straight[0] / "never.png").exists()
