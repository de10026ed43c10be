"""``npegg train --method backprop``: the same model trained by BPTT, on the bytes ES would read."""
import io

import numpy as np
import pytest

from npegg.program import cli
from npegg.program.checkpoint import load_checkpoint
from npegg.program.data import load_corpus
from npegg.program.config import TrainConfig
from npegg.program.runs import FloatRun, make_run
from npegg.tree import flatten

TEXT = "def add(a, b):\n    return a + b\n\nclass Box:\n    pass\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp_corpus")
    for i in range(12):
        (root / f"m{i:02d}.py").write_text(TEXT * (1 + i % 3))
    return root


def run(argv):
    buf = io.StringIO()
    return cli.main([str(a) for a in argv], stdout=buf), buf.getvalue()


def tiny(corpus, out, *extra):
    return ["train", "--data", corpus, "--method", "backprop", "--hidden-dim", "8", "--n-layers", "1",
            "--pop-size", "16", "--group-size", "4", "--tokens-per-update", "16", "--lr", "0.01",
            "--lr-schedule", "constant", "--sample-bytes", "10", "--out", out, *extra]


def test_backprop_reads_the_bytes_es_reads_and_starts_from_the_same_params(corpus):
    """Epoch for epoch, a backprop step's batch is the S = P/g windows of the ES groups, and both runs
    start from the same initial parameters."""
    c = load_corpus(str(corpus))
    cfg = TrainConfig(hidden_dim=8, n_layers=1, pop_size=16, group_size=4, tokens_per_update=16)
    es, bp = FloatRun(cfg, c), make_run(TrainConfig(**{**cfg.__dict__, "method": "backprop"}), c)
    for a, b in zip(flatten(es.params).values(), flatten(bp.params).values()):
        assert np.array_equal(a, b)
    w_es, _ = es.reader.next(es.data_state)
    w_bp, _ = bp.reader.next(bp.data_state)
    assert np.array_equal(w_es[::4], w_bp[::4]) and bp.hidden.shape == (4, 1, 8)


def test_backprop_trains_lowers_the_loss_and_resumes_bit_for_bit(corpus, tmp_path):
    """12 steps lower the validation bpb; 6 steps, then --resume to 12, give the same checkpoint bits."""
    code, text = run(tiny(corpus, tmp_path / "a", "--epochs", "12", "--eval-every", "12"))
    assert code == 0, text
    assert "backprop through time: batch of 4 streams" in text
    a = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    valid = a.trees["history"]["valid_bpb"]
    assert valid[-1] < valid[0] - 1.0, valid
    code, text = run(tiny(corpus, tmp_path / "b", "--epochs", "6", "--eval-every", "12"))
    assert code == 0, text
    code, text = run(["train", "--resume", tmp_path / "b", "--epochs", "12"])
    assert code == 0, text
    b = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    for tree in ("params", "opt_state", "hidden", "data"):
        fa, fb = flatten(a.trees[tree]), flatten(b.trees[tree])
        assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa), tree
    code, text = run(["sample", tmp_path / "a", "--length", "20"])
    assert code == 0, text


def test_int_mode_has_no_backprop(corpus, tmp_path, capsys):
    """--mode int --method backprop is refused before any work, naming the flag."""
    code, _ = run(["train", "--data", corpus, "--mode", "int", "--method", "backprop", "--out", tmp_path / "x"])
    assert code == 2 and "--method" in capsys.readouterr().err


def test_progress_shows_data_and_member_byte_rates():
    """With member_bytes_per_epoch the line gives both rates: S·T data bytes and P·T member-bytes per second."""
    from npegg.program.progress import Progress
    out, t = io.StringIO(), iter([0.0, 1.0])
    p = Progress(4, bytes_per_epoch=1000, stream=out, every=1, clock=lambda: next(t), member_bytes_per_epoch=8000)
    p.update(1, 5.0)
    assert "1.0 kB/s data, 8.0 kB/s member-bytes" in out.getvalue()
