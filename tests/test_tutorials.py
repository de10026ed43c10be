"""Every chapter and solution runs in its small setting, writes its figures and keeps its claims.

The chapters are run once per session, as notebooks, by the site build (the ``small_book``
fixture in conftest.py: ``docs/build.py --small``); these tests read what that run recorded in
``build.json`` (each page's last, hidden cell writes its record, so a record means it ran to the end). Chapters are discovered by glob (``tutorials/NN_*.py``, solutions in
``tutorials/solutions/NN_*.py``), so a new one is tested without touching this file. Each chapter
declares ``FIGURES = [...]`` at module level, read here with ``ast`` (the chapter is not
imported). One chapter also runs as a plain ``python`` script, the other way readers run them.
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted((TUTORIALS / "solutions").glob("[0-9][0-9]_*.py"))


def declared_figures(path: Path) -> list:
    """The chapter's module-level ``FIGURES`` list, read without running it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FIGURES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def ran(book, path: Path) -> dict:
    """What the site build recorded for one source file; fails with the build's log if it did not run."""
    assert book.manifest is not None, f"the site build wrote no build.json:\n{book.log}"
    entry = book.manifest["pages"].get(path.relative_to(ROOT).as_posix())
    assert entry is not None, f"{path.name} is not in the site"
    assert entry["ran"], f"{path.name} did not run to its end in the site build:\n{book.log}"
    assert entry["small"] is True, f"{path.name} did not run in the small setting"
    return entry


def test_chapters_found():
    assert CHAPTERS, f"no chapters in {TUTORIALS}"


@pytest.mark.main_pass_only
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_small(chapter, small_book):
    """The chapter runs to the end as a notebook in the small setting, writes every declared
    figure (matplotlib is in the test extra) and keeps every claim it checks with book.check."""
    figures = declared_figures(chapter)
    assert figures, f"{chapter.name} declares no FIGURES"
    assert all(f.endswith(".png") for f in figures), figures
    entry = ran(small_book, chapter)
    assert entry["plotting"], f"{chapter.name} ran without matplotlib: figures not checked"
    assert sorted(entry["figures"]) == sorted(figures), f"{chapter.name}: wrote {entry['figures']}, declares {figures}"
    missing = [f for f in figures if not (small_book.out / "figures" / f).is_file()]   # NPEGG_TUTORIAL_OUT
    assert not missing, f"{chapter.name} did not write {missing}"
    for name, c in entry["claims"].items():   # book.check raises on a drift; read back as a second look
        if c["checked"]:
            assert abs(c["value"] - c["expected"]) <= c["tol"], (chapter.name, name, c)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_exercises_with_solutions(chapter):
    """At least three numbered exercises, and a solutions file with an exercise_k function for each."""
    text = chapter.read_text(encoding="utf-8")
    assert "# ## Exercises" in text, f"{chapter.name} has no Exercises section"
    section = text.split("# ## Exercises", 1)[1]
    numbered = [k for k in range(1, 30) if f"\n# {k}. " in section]
    assert numbered == list(range(1, len(numbered) + 1)) and len(numbered) >= 3, numbered
    solution = TUTORIALS / "solutions" / chapter.name
    assert solution.is_file(), f"no {solution}"
    defined = {n.name for n in ast.parse(solution.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)}
    missing = [k for k in numbered if f"exercise_{k}" not in defined]
    assert not missing, f"{solution.name} has no exercise_k for k in {missing}"


@pytest.mark.main_pass_only
@pytest.mark.parametrize("solution", SOLUTIONS, ids=[f"solutions/{p.stem}" for p in SOLUTIONS])
def test_solutions_run(solution, small_book):
    """Every solutions file ran to the end in the book build (each exercise_k asserts its own
    answer) and belongs to a chapter."""
    assert (TUTORIALS / solution.name).is_file(), f"solutions/{solution.name} has no chapter {solution.name}"
    ran(small_book, solution)


def test_a_chapter_runs_as_a_plain_script(tmp_path):
    """``python tutorials/09_oracle.py`` (no Jupyter) runs in the small setting and writes its
    figures: the script path of _book (figures saved, nothing displayed) works outside a kernel."""
    chapter = TUTORIALS / "09_oracle.py"
    env = {**os.environ, "NPEGG_TUTORIAL_SMALL": "1", "MPLBACKEND": "Agg", "NPEGG_TUTORIAL_OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, chapter.name], cwd=TUTORIALS, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{chapter.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "[setting] small" in proc.stdout
    missing = [f for f in declared_figures(chapter) if not (tmp_path / f).is_file()]
    assert not missing, f"{chapter.name} did not write {missing}"


CHECK_SCRIPT = """
import pytest, _book as book
book.choose_setting(True)
assert book.check("within", 0.725, 0.72, tol=0.01) == 0.725
with pytest.raises(book.ClaimDrift, match="'outside'.*0.75"):
    book.check("outside", 0.75, 0.72, tol=0.01)
with pytest.raises(book.ClaimDrift):
    book.check("nan", float("nan"), 0.72, tol=0.01)
book.check("full only", 0.9, 0.72, tol=0.01, full_only=True)
assert book.CLAIMS["full only"]["checked"] is False and book.CLAIMS["within"]["checked"] is True
book.choose_setting(False)
with pytest.raises(book.ClaimDrift):
    book.check("full only", 0.9, 0.72, tol=0.01, full_only=True)
with pytest.raises(TypeError, match="True, False or None"):
    book.choose_setting("yes")
print("all claims behaved")
"""


def test_check_raises_when_a_claim_drifts():
    """book.check passes within tol, raises ClaimDrift outside it (and on NaN), and leaves a
    full_only claim unchecked, but recorded, in the small setting. (In a subprocess: importing
    _book sets BLAS threads, which must not leak into the other tests.)"""
    proc = subprocess.run([sys.executable, "-c", CHECK_SCRIPT], cwd=TUTORIALS, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "all claims behaved" in proc.stdout, proc.stdout + proc.stderr
