"""Odd environments (issue 19): each was a traceback; now a clear error before any work, or a run
that just works. Real ``npegg`` processes, real files (a sparse 200 GiB file, a folder 1,000 deep,
a non-UTF-8 folder name, a deleted working folder, a 250-character file name)."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from npegg.program.config import TrainConfig
from npegg.program.data import check_fits, load_corpus, DataError
from npegg.program.preflight import PreflightError, check_memory, short_name
from npegg_process import ENV, npegg_process, write_word_corpus

TINY = ["--hidden-dim", "8", "--n-layers", "1", "--pop-size", "8", "--tokens-per-update", "16", "--epochs", "2",
        "--eval-every", "1", "--sample-bytes", "0", "--workers", "1"]


def refused(p, *words):
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and all(w in p.stderr for w in words), p.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("words"), seed=0)


@pytest.mark.parametrize("value", ["²", "two", "0", "-1", "1.5", "99999"])
def test_a_bad_npegg_blas_threads_is_refused_by_name(corpus, tmp_path, value):
    p = npegg_process("train", "--data", corpus, "--out", tmp_path / "r", *TINY, env={"NPEGG_BLAS_THREADS": value})
    refused(p, "NPEGG_BLAS_THREADS must be a whole number of threads from 1 to 4096", repr(value))
    assert not (tmp_path / "r").exists()


def test_a_value_openblas_ignores_is_ignored_here_too(corpus, tmp_path):
    """OPENBLAS_NUM_THREADS is OpenBLAS's variable: a value it cannot read does not stop npegg."""
    p = npegg_process("train", "--data", corpus, "--out", tmp_path / "r", *TINY, env={"OPENBLAS_NUM_THREADS": "²"})
    assert p.returncode == 0, p.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="a folder name that is not UTF-8 needs a byte-named file system")
def test_a_non_utf8_corpus_folder_name_trains_and_draws_its_curve(corpus, tmp_path):
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/c\xff\xfe"))
    odd.mkdir()
    for f in corpus.iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    p = npegg_process("train", "--data", odd, "--out", tmp_path / "r", *TINY, env={"LC_ALL": "C.UTF-8"})
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "corpus c\ufffd\ufffd:" in p.stdout                       # shown with U+FFFD, not a crash
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["corpus"]["name"] == "c\ufffd\ufffd"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "r" / "curve.png").stat().st_size > 0


def test_a_200_gib_sparse_data_file_is_refused_before_reading(tmp_path):
    """A sparse file takes no disk but would need 2 × 200 GiB of memory: refused naming --data."""
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(200 << 30)
    p = npegg_process("train", "--data", big, "--out", tmp_path / "r", *TINY)
    refused(p, f"--data {big}: 214.7 GB of data needs about 429.5 GB of memory", "use a smaller file or folder")
    assert not (tmp_path / "r").exists() and "MemoryError" not in p.stderr
    p = npegg_process("eval", tmp_path / "nothing", "--data", big)          # eval reads data the same way
    assert "Traceback" not in p.stderr and p.returncode != 0
    with pytest.raises(DataError, match="214.7 GB of data"):
        check_fits(big, available=8 << 30)


def test_the_memory_check_counts_the_data_and_its_copies_in_workers(corpus, tmp_path):
    """need = … + S·2 (+ S·W with W > 1 workers): measured against an ``available`` given by hand."""
    data = tmp_path / "d.txt"
    data.write_bytes(b"x" * 40_000_000)
    cfg = replace(TrainConfig(hidden_dim=8, n_layers=1, pop_size=8, tokens_per_update=16), data=str(data)).resolved()
    check_memory(replace(cfg, data=str(corpus)), available=200 << 20)
    with pytest.raises(PreflightError, match=r"--data .*d.txt: 40 MB of data needs about 80 MB"):
        check_memory(cfg, available=160 << 20)
    check_memory(cfg, available=300 << 20)
    with pytest.raises(PreflightError, match=r"40 MB of data needs about 0.2 GB of memory .*a copy in every worker.*fewer --workers"):
        check_memory(cfg, available=300 << 20, workers=4)


def _deep(root: Path, depth: int) -> Path:
    p = root
    for _ in range(depth):                                   # os.makedirs recurses once per level
        p = p / "d"
        p.mkdir()
    return p


def _remove_deep(root: Path, depth: int) -> None:
    """Remove the tree bottom-up without recursion (shutil.rmtree recurses once per level)."""
    for level in range(depth, 0, -1):
        p = root.joinpath(*["d"] * level)
        for f in p.iterdir():
            if f.is_file():
                f.unlink()
        p.rmdir()


def test_a_corpus_1000_folders_deep_is_read(corpus, tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    try:
        (_deep(root, 1000) / "bottom.txt").write_text("the document at the bottom of the tree\n")
        for f in sorted(corpus.iterdir())[:4]:
            (root / f.name).write_bytes(f.read_bytes())
        c = load_corpus(root)
        assert c.n_docs == 5 and b"the document at the bottom" in c.train.tobytes() + c.valid.tobytes()
        p = npegg_process("train", "--data", root, "--out", tmp_path / "r", *TINY)
        assert p.returncode == 0 and "RecursionError" not in p.stderr, p.stderr
    finally:
        _remove_deep(root, 1000)


def test_a_relative_data_path_from_a_deleted_working_folder_is_one_clear_error(corpus, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    cmd = [sys.executable, "-m", "npegg", "train", "--data", "corp", "--out", str(tmp_path / "r"), *TINY]
    p = subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$@"', "sh", *cmd],
                       capture_output=True, text=True, env=ENV, timeout=120)
    refused(p, "--data: corp: a relative path, but the current folder no longer exists")


def test_a_250_character_data_file_name_gets_a_short_default_run_folder(corpus, tmp_path):
    name = "x" * 246 + ".txt"
    (tmp_path / name).write_bytes(b"".join(f.read_bytes() for f in sorted(corpus.iterdir())))
    p = npegg_process("train", "--data", name, *TINY, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert len(os.fsencode(run.name)) <= 255 and (run / "checkpoint.npz").exists()
    assert run.name.startswith(short_name("x" * 246)) and short_name("x" * 246) != short_name("x" * 245 + "y")
    assert short_name("corpus") == "corpus" and len(short_name("é" * 100).encode()) <= 80


def test_a_run_of_a_trillion_epochs_is_refused_naming_epochs(corpus, tmp_path):
    """Its history alone (224 B per epoch) would need 224 TB: the refusal names --epochs, not --out."""
    p = npegg_process("train", "--data", corpus, "--out", tmp_path / "r", *TINY[:8], "--epochs", str(10**12))
    refused(p, f"--epochs {10**12}: the run's history", "choose fewer epochs")
    assert not (tmp_path / "r").exists()
