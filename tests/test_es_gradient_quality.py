"""The ES-gradient-quality benchmark on a tiny trained run: it prints a cosine per estimate, and
the ES estimate points the way backprop's gradient does (a wrong sign or a wrong noise would not)."""
import re
import subprocess
import sys

from npegg_process import ENV, ROOT, npegg_process, write_word_corpus


def test_es_estimate_agrees_with_backprop_in_sign(tmp_path):
    (tmp_path / "words").mkdir()
    corpus = write_word_corpus(tmp_path / "words", seed=5)
    run = tmp_path / "run"
    p = npegg_process("train", "--data", corpus, "--hidden-dim", 8, "--n-layers", 1, "--pop-size", 256,
                      "--group-size", 8, "--tokens-per-update", 20, "--epochs", 6, "--workers", 1,
                      "--sample-bytes", 0, "--out", run, timeout=300)
    assert p.returncode == 0, p.stderr
    q = subprocess.run([sys.executable, "-m", "benchmarks.es_gradient_quality", str(run), "--reps", "3", "--small"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-2000:]
    rows = dict(re.findall(r"^\| (.+?) \| (-?\d\.\d{4}) \|", q.stdout, re.M))
    assert {"backprop on one epoch's windows", "ES, P = 256, σ = 0.03", "leaf emb, every row",
            "leaf emb, rows_seen", "leaf direct, rows_seen"} <= set(rows), q.stdout
    assert all(-1 <= float(c) <= 1 for c in rows.values())
    # 256 members on an 8-wide model (~70 k parameters with the direct table): the estimate's cosine
    # with the gradient is small but its sign is not in doubt; a flipped G would make it negative
    assert float(rows["ES, P = 256, σ = 0.03"]) > 0
    assert float(rows["backprop on one epoch's windows"]) > float(rows["ES, P = 256, σ = 0.03"])
    bad = subprocess.run([sys.executable, "-m", "benchmarks.es_gradient_quality", str(run), "--reps", "1"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--reps" in bad.stderr
