"""Running the real ``npegg`` command in a subprocess, on a tiny corpus of words, for the tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the subprocess imports npegg from this checkout, installed or not
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
WORDS = "the quick brown fox jumps over a lazy dog and every jovial wizard".split()


def npegg_process(*argv, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m npegg ARGV`` with text output captured; ``env`` adds to ``ENV``."""
    return subprocess.run([sys.executable, "-m", "npegg", *map(str, argv)], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, cwd=cwd, timeout=timeout)


def write_word_corpus(root: Path, seed: int) -> Path:
    """12 documents of 25 words drawn from ``WORDS`` with ``default_rng(seed)``, in ``root``."""
    rng = np.random.default_rng(seed)
    for i in range(12):
        (root / f"doc{i:02d}.txt").write_text(" ".join(rng.choice(WORDS, 25)) + ".\n")
    return root
