"""Running the real ``npegg`` command in a subprocess, on a tiny corpus of words, for the tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the subprocess imports npegg from this checkout, installed or not
#: (no empty entry when PYTHONPATH is unset: "" means the working folder, which a test may have deleted)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)}
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


def npegg_started(*argv, cwd=None, env=None, stdout=subprocess.PIPE, **popen) -> subprocess.Popen:
    """``python -m npegg ARGV`` started in its own session (so a test can signal its whole process
    group, as a terminal or ``timeout`` does), text stdout piped, stderr captured."""
    return subprocess.Popen([sys.executable, "-m", "npegg", *map(str, argv)], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, env={**ENV, **(env or {})}, cwd=cwd,
                            start_new_session=True, **popen)


def read_until(proc: subprocess.Popen, pattern: str) -> list:
    """The lines of ``proc``'s stdout up to the first one matching the regex ``pattern``; fails
    (with what it read and stderr) if the output ends first."""
    import re
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return lines
    proc.wait(timeout=60)
    raise AssertionError(f"no line matching {pattern!r}; exit {proc.returncode}\n{''.join(lines)}\n{proc.stderr.read()}")


def finish(proc: subprocess.Popen, timeout=120) -> tuple:
    """(exit status, the rest of stdout, stderr) of ``proc``; killed with its group if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    return proc.returncode, out or "", err or ""
