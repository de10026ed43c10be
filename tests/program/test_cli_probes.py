"""What a hostile or careless user tried (issue 11), each kept as a test on a real ``npegg`` process.

A refused command must print one clear line on stderr (no traceback), exit non-zero, and do so
before any work: no run folder content, no training output.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npegg.program import cli
from npegg.program.blas import blas_config
from npegg.program.checkpoint import load_checkpoint, save_checkpoint
from npegg.tree import tree_map
from npegg_process import ENV, npegg_process, write_word_corpus

TINY = ["--hidden-dim", "8", "--n-layers", "1", "--pop-size", "16", "--group-size", "2",
        "--tokens-per-update", "16", "--sample-bytes", "0"]


npegg = npegg_process


def refused(p, code: int, *words) -> str:
    """The process exited ``code`` with exactly one line on stderr, naming ``words``, and no traceback."""
    err = p.stderr.strip()
    assert p.returncode == code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len(err.splitlines()) == 1, p.stderr
    assert err.startswith("npegg") and "error:" in err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("corpus"), seed=3)


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    """A real 2-epoch run, written on one BLAS thread (its checkpoint records that)."""
    out = tmp_path_factory.mktemp("runs") / "good"
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "2", "--lr-schedule", "constant", "--out", out,
              env={"NPEGG_BLAS_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    return out


def unwritable(tmp_path) -> Path:
    """A folder this process cannot create: read-only for a normal user, /sys for root."""
    if os.geteuid() == 0:
        return Path("/sys/npegg-probe-run")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    return ro / "run"


# -- train: refused before any work -------------------------------------------------------------------
@pytest.mark.parametrize("flags, code, words", [
    (["--mode", "int", "--alpha", "inf"], 2, ["--alpha", "finite"]),
    (["--mode", "int", "--direct-path"], 2, ["--direct-path", "nano-egg's EGG, set by --hidden-dim"]),   # the model's
    (["--mode", "int", "--lr", "0.1"], 2, ["--lr", "±1", "--sigma-shift and --alpha"]),                 # the update's
    (["--mode", "int", "--sigma-shift", "2e19"], 2, ["--sigma-shift", "invalid int value"]),
    (["--mode", "int", "--sigma-shift", str(2 * 10**19)], 2, ["--sigma-shift", "0..27"]),
    (["--mode", "int", "--sigma-shift", "100"], 2, ["--sigma-shift", "0..27"]),
    (["--hidden-dim", "100000"], 2, ["--hidden-dim 100000", "memory"]),
    (["--pop-size", "1000000000"], 2, ["--pop-size 1000000000", "memory"]),
    (["--hidden", "8"], 2, ["unrecognized arguments: --hidden"]),
    (["--data", "/dev/zero"], 1, ["--data", "/dev/zero", "not a regular file"]),
    (["--rank", str(10**26)], 2, ["--rank", "noise table"]),                  # third round: worker tracebacks
    (["--mlp-ratio", str(10**26)], 2, ["--mlp-ratio", "memory"]),             # third round: a traceback
    (["--method", "backprop", "--sigma", "0.5"], 2, ["--sigma", "--method backprop"]),   # third round: ignored
    (["--method", "backprop", "--rank", "4"], 2, ["--rank", "--method backprop"]),       # without a word
])
def test_train_refuses_before_any_work(corpus, tmp_path, flags, code, words):
    out = tmp_path / "run"
    args = ["--data", corpus, *TINY, "--epochs", "2", "--out", out, *flags]
    if "--data" in flags:
        args = args[2:]
    p = npegg("train", *args, timeout=60)
    refused(p, code, *words)
    assert not out.exists() and "epoch" not in p.stdout


def test_train_refuses_a_fifo_as_data_without_hanging(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    p = npegg("train", "--data", fifo, *TINY, "--out", tmp_path / "run", timeout=60)
    refused(p, 1, "--data", "not a regular file")
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_unwritable_out_before_training(corpus, tmp_path):
    out = unwritable(tmp_path)
    p = npegg("train", "--data", corpus, *TINY, "--out", out, timeout=60)
    refused(p, 2, f"--out {out}", "cannot write there")
    assert not out.exists() and "epoch" not in p.stdout


def test_train_refuses_a_file_as_out_even_with_overwrite(corpus, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    p = npegg("train", "--data", corpus, *TINY, "--out", f, "--overwrite", timeout=60)
    refused(p, 2, "--out", "is a file")
    assert f.read_text() == "keep me"


def test_usage_lists_every_command():
    p = npegg("--help")
    assert p.returncode == 0 and "{train,sample,eval,export-vectors}" in p.stdout


# -- sample ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, words", [
    (["--temperature", "nan"], ["--temperature", "finite"]),
    (["--seed", "-1"], ["--seed", "[0, 2**32)"]),
])
def test_sample_refuses_bad_flags(run_dir, flags, words):
    refused(npegg("sample", run_dir, *flags), 2, *words)


def test_sample_prompt_with_a_lone_surrogate_is_a_clear_error(run_dir, capsys):
    assert cli.main(["sample", str(run_dir), "--prompt", "ab\ud800", "--length", "4"], stdout=io.StringIO()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--prompt" in err and "surrogate" in err


def test_sample_prompt_of_raw_bytes_is_taken_as_bytes(run_dir):
    """A byte that is not UTF-8 reaches Python as a surrogate escape; it is continued as that byte."""
    p = subprocess.run([sys.executable, "-m", "npegg", "sample", str(run_dir), "--prompt", b"a\xff", "--length", "3"],
                       capture_output=True, env=ENV, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith(b"a\xef\xbf\xbd"), p.stderr    # shown as U+FFFD


# -- hand-edited checkpoints ----------------------------------------------------------------------------
def edited(run_dir: Path, dst: Path, edit) -> Path:
    """A copy of the run whose checkpoint is re-saved (a valid, consistent file) after ``edit(ckpt)``."""
    shutil.copytree(run_dir, dst)
    ck = load_checkpoint(dst / "checkpoint.npz")
    edit(ck)
    save_checkpoint(dst / "checkpoint.npz", ck.trees, config=ck.config, scalars=ck.scalars, fingerprint=ck.fingerprint)
    return dst


def _set(part, *keys_and_value):
    """An edit setting ck.<part>[k1][k2]… = value (part: trees, config or scalars)."""
    *keys, value = keys_and_value

    def edit(ck):
        node = getattr(ck, part)
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


ALL = ("sample", "eval", "train")


@pytest.mark.parametrize("name, edit, commands, words", [
    ("config-type", _set("config", "train", "hidden_dim", "8"), ALL, ["hidden_dim = '8'", "not an int"]),
    ("config-value", _set("config", "train", "pop_size", 7), ("eval",), ["--pop-size", "even"]),
    ("hidden-shape", _set("trees", "hidden", np.zeros((4, 1, 8), np.float32)), ALL, ["hidden", "(4, 1, 8) saved"]),
    ("optimizer-leaf", lambda ck: ck.trees["opt_state"].pop(sorted(ck.trees["opt_state"])[0]), ("train",),
     ["missing"]),
    ("sigma-type", _set("scalars", "sigma", "0.03"), ("sample",), ["sigma", "not a finite float"]),
    # the reader position only matters to training: sample and eval never read it
    ("data-position", _set("trees", "data", "pos", np.full(8, 10**9, np.int64)), ("train",), ["reader position"]),
])
def test_hand_edited_checkpoint_is_one_clear_line_for_every_command(run_dir, corpus, tmp_path, name, edit,
                                                                    commands, words):
    run = edited(run_dir, tmp_path / name, edit)
    before = (run / "checkpoint.npz").read_bytes()
    argvs = {"sample": ["sample", run, "--length", "3"], "eval": ["eval", run],
             "train": ["train", "--resume", run, "--epochs", "2"]}
    for argv in (argvs[c] for c in commands):
        err = refused(npegg(*argv), 1, *words)
        assert err.count(str(run)) == 1                     # the path is named once, not repeated
    assert (run / "checkpoint.npz").read_bytes() == before


def test_checkpoint_with_a_foreign_member_or_negative_epoch(run_dir, tmp_path):
    import zipfile
    run = tmp_path / "foreign"
    shutil.copytree(run_dir, run)
    with zipfile.ZipFile(run / "checkpoint.npz", "a") as zf:
        zf.writestr("payload.pkl", b"cos\nsystem\n(S'echo hi'\ntR.")
    refused(npegg("sample", run), 1, "'payload.pkl' is not a .npy array")
    run = edited(run_dir, tmp_path / "negative", _set("scalars", "epoch", -3))
    refused(npegg("train", "--resume", run), 1, "epoch must be an integer >= 0")


# -- runs that go wrong while training -------------------------------------------------------------------
def test_diverging_run_stops_clearly_and_saves_nothing_non_finite(corpus, tmp_path):
    out = tmp_path / "sigma"
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "4", "--sigma", "1e30", "--out", out)
    refused(p, 1, "epoch 1", "not finite", "--sigma")
    assert not (out / "checkpoint.npz").exists()


def test_diverging_resume_never_overwrites_the_good_checkpoint(run_dir, tmp_path):
    """Layer weights scaled by 1e30 are finite but overflow the next forward: the saved file is kept as it is."""
    def blow_up(ck):
        ck.trees["params"]["blocks"] = tree_map(lambda v: (v * np.float32(1e30)).astype(v.dtype),
                                                ck.trees["params"]["blocks"])
    run = edited(run_dir, tmp_path / "huge", blow_up)
    before = (run / "checkpoint.npz").read_bytes()
    p = npegg("train", "--resume", run, "--epochs", "4")
    refused(p, 1, "epoch 3", "not finite", "last good checkpoint")
    assert (run / "checkpoint.npz").read_bytes() == before


def test_interrupt_during_the_final_validation_keeps_everything_consistent(corpus, tmp_path, monkeypatch):
    """Ctrl-C inside the last validation: checkpoint and history both end at the last epoch; the
    resumed run validates it and writes the same metrics as an uninterrupted run."""
    from npegg.program.runs import FloatRun
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    argv = ["train", "--data", str(corpus), *TINY, "--epochs", "2", "--lr-schedule", "constant"]
    assert cli.main(argv + ["--out", str(straight)], stdout=io.StringIO()) == 0
    real, calls = FloatRun.valid_bpb, []

    def interrupted(self):
        calls.append(self.epoch)
        if self.epoch == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(FloatRun, "valid_bpb", interrupted)
    assert cli.main(argv + ["--out", str(cut)], stdout=io.StringIO()) == 130
    ck = load_checkpoint(cut / "checkpoint.npz")
    assert ck.scalars["epoch"] == 2 and ck.trees["history"]["epoch"].tolist() == [0, 1, 2]
    assert cli.main(["train", "--resume", str(cut)], stdout=io.StringIO()) == 0
    a, b = (json.loads((p / "metrics.json").read_text())["history"] for p in (straight, cut))
    assert a["epoch"] == b["epoch"] == [0, 1, 2] and a["valid_bpb"] == b["valid_bpb"] and a["train_bpb"] == b["train_bpb"]
    assert (cut / "metrics.csv").read_text().splitlines()[-1].startswith("2,")


# -- data path, BLAS ---------------------------------------------------------------------------------------
def test_relative_data_is_stored_absolute_so_resume_works_elsewhere(corpus, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(corpus, work / "texts")
    p = npegg("train", "--data", "texts", *TINY, "--epochs", "2", "--lr-schedule", "constant", "--out", "r", cwd=work)
    assert p.returncode == 0, p.stderr
    assert load_checkpoint(work / "r" / "checkpoint.npz").config["train"]["data"] == str(work / "texts")
    p = npegg("eval", work / "r", cwd=tmp_path)
    assert p.returncode == 0 and "bpb" in p.stdout, p.stderr


def test_resume_under_another_blas_thread_count_warns_once(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    saved = load_checkpoint(run / "checkpoint.npz").config["blas"]
    assert saved == {**blas_config(), "threads": saved["threads"]} and saved["threads"] in (1, None)
    p = npegg("train", "--resume", run, env={"NPEGG_BLAS_THREADS": "2"})
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if "warning" in line]
    if saved["threads"] is None:                         # no OpenBLAS to ask: nothing to compare
        assert warnings == []
    else:
        assert warnings == ["npegg train: warning: this machine's NumPy/BLAS differs from the checkpoint's "
                            "(threads: checkpoint 1, now 2); float results continue, but not bit for bit"]
    p = npegg("train", "--resume", run, env={"NPEGG_BLAS_THREADS": "1"})
    assert p.returncode == 0 and "warning" not in p.stderr


def test_export_vectors_into_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    """A DIR below a regular file cannot be created (even by root, unlike a chmod-ed folder):
    one line naming the folder, exit 1, no traceback, and nothing written."""
    (tmp_path / "a-file").write_text("mine")
    refused(npegg("export-vectors", tmp_path / "a-file" / "vectors"), 1, "a-file/vectors", "cannot create or write")
    assert (tmp_path / "a-file").read_text() == "mine"


# -- found by the second hostile round (issue 19) ------------------------------------------------------
def test_an_empty_out_is_refused_not_read_as_the_default(corpus, tmp_path):
    """--out "" named no folder, and the run silently went to a new default folder under runs/."""
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--out", "", cwd=tmp_path)
    refused(p, 2, "--out must name a folder")
    assert not (tmp_path / "runs").exists()


def test_a_sample_too_long_to_ever_end_is_refused(run_dir):
    """--length 10¹² ran for ever without a word (one model step per byte)."""
    p = npegg("sample", run_dir, "--length", "1000000000000")
    refused(p, 2, "--length must be between 0 and 1,000,000")


def test_a_sample_prints_on_an_ascii_only_stdout(run_dir):
    """PYTHONIOENCODING=ascii with a non-ASCII prompt was a UnicodeEncodeError traceback, then (once a
    failed write meant a broken stdout) no output at all: the characters it cannot show print as '?'."""
    p = npegg("sample", run_dir, "--prompt", "é", "--length", "5", env={"PYTHONIOENCODING": "ascii"})
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.startswith("?")


# -- found by the third hostile round ------------------------------------------------------------------
def test_a_sample_too_long_to_ever_end_is_refused_by_train_too(corpus, tmp_path):
    """--sample-bytes 10¹¹ was accepted: the run trained, then sampled for ever after its last epoch."""
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--out", tmp_path / "run",
              "--sample-bytes", "100000000000", timeout=60)
    refused(p, 2, "--sample-bytes", "1,000,000")
    assert not (tmp_path / "run").exists() and "epoch" not in p.stdout


def test_an_empty_resume_is_refused_not_read_as_a_new_run(corpus, tmp_path):
    """--resume "" was read as no --resume at all: a new run started, silently."""
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--resume", "", "--out", tmp_path / "run")
    refused(p, 2, "--resume must name a run folder")
    assert not (tmp_path / "run").exists() and "epoch" not in p.stdout


def test_an_empty_data_is_refused_not_read_as_the_current_folder(tmp_path):
    """--data "" became the current folder, whose files (whatever they were) became the corpus."""
    (tmp_path / "notes.txt").write_text("my own notes, not a corpus " * 20)
    p = npegg("train", "--data", "", *TINY, "--epochs", "1", "--out", tmp_path.parent / f"{tmp_path.name}-run",
              cwd=tmp_path)
    refused(p, 2, "--data", "empty string")
    assert not (tmp_path.parent / f"{tmp_path.name}-run").exists() and "epoch" not in p.stdout


@pytest.mark.parametrize("command", [["sample", ""], ["eval", ""], ["export-vectors", ""]])
def test_an_empty_path_argument_is_refused_not_read_as_the_current_folder(command, tmp_path):
    """`npegg sample ""` read ./checkpoint.npz; `export-vectors ""` wrote into the current folder when it was empty."""
    p = npegg(*command, cwd=tmp_path)
    refused(p, 2, "must name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-3"])
def test_eval_names_max_docs_when_it_is_out_of_range(run_dir, value):
    """eval --max-docs 0 was blamed on --data (exit 1, a data error) instead of the flag itself."""
    refused(npegg("eval", run_dir, "--max-docs", value), 2, "--max-docs", ">= 1")


def test_a_quoted_tilde_means_home_in_out_and_resume_as_in_data(corpus, tmp_path):
    """--data "~/x" was the home folder's x, but --out "~/x" made a folder literally named "~" in the
    current folder (one `rm -rf ~` away from the real home), and --resume "~/x" did not find the run."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir(), here.mkdir()
    p = npegg("train", "--data", corpus, *TINY, "--epochs", "1", "--lr-schedule", "constant", "--out", "~/run",
              cwd=here, env={"HOME": str(home)})
    assert p.returncode == 0, p.stderr
    assert (home / "run" / "checkpoint.npz").is_file() and list(here.iterdir()) == []
    p = npegg("train", "--resume", "~/run", "--epochs", "2", cwd=here, env={"HOME": str(home)})
    assert p.returncode == 0 and list(here.iterdir()) == [], p.stderr
    p = npegg("sample", "~/run", "--length", "3", cwd=here, env={"HOME": str(home)})
    assert p.returncode == 0, p.stderr


def test_too_little_data_for_one_window_names_tokens_per_update(corpus, tmp_path):
    """The message named the field tokens_per_update, not the flag to change."""
    p = npegg("train", "--data", corpus, *TINY, "--tokens-per-update", "100000", "--out", tmp_path / "run")
    refused(p, 1, "--tokens-per-update 100000", "smaller --tokens-per-update")
    assert not (tmp_path / "run").exists()
