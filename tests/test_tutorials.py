"""Every chapter of the book runs in its small setting and writes the figures it declares.

Chapters are discovered by glob (``tutorials/[0-9][0-9]_*.py``), so a new chapter is tested
without touching this file. Each chapter declares ``FIGURES = [...]`` at module level; the
list is read with ``ast`` (the chapter is not imported). Without matplotlib the chapters skip
their plots, and only the exit code is checked.
"""
import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def declared_figures(path: Path) -> list:
    """The chapter's module-level ``FIGURES`` list, read without running it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FIGURES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def test_chapters_found():
    assert CHAPTERS, f"no chapters in {TUTORIALS}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_small(chapter, tmp_path):
    """The chapter exits 0 under NPEGG_TUTORIAL_SMALL=1 and writes every declared figure."""
    figures = declared_figures(chapter)
    assert figures, f"{chapter.name} declares no FIGURES"
    assert all(f.endswith(".png") for f in figures), figures
    env = {**os.environ, "NPEGG_TUTORIAL_SMALL": "1", "MPLBACKEND": "Agg", "NPEGG_TUTORIAL_OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, chapter.name], cwd=TUTORIALS, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{chapter.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    if HAVE_MPL:
        missing = [f for f in figures if not (tmp_path / f).is_file()]
        assert not missing, f"{chapter.name} did not write {missing}"


SOLUTIONS = TUTORIALS / "solutions"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_exercises_with_solutions(chapter):
    """At least three numbered exercises, and a solutions file with an exercise_k function for each."""
    text = chapter.read_text(encoding="utf-8")
    assert "# ## Exercises" in text, f"{chapter.name} has no Exercises section"
    section = text.split("# ## Exercises", 1)[1]
    numbered = [k for k in range(1, 30) if f"\n# {k}. " in section]
    assert numbered == list(range(1, len(numbered) + 1)) and len(numbered) >= 3, numbered
    solution = SOLUTIONS / chapter.name
    assert solution.is_file(), f"no {solution}"
    defined = {n.name for n in ast.parse(solution.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)}
    missing = [k for k in numbered if f"exercise_{k}" not in defined]
    assert not missing, f"{solution.name} has no exercise_k for k in {missing}"


@pytest.mark.parametrize("solution", sorted(SOLUTIONS.glob("[0-9][0-9]_*.py")),
                         ids=lambda p: f"solutions/{p.stem}")
def test_solutions_run(solution):
    """Every solution file runs to the end: each exercise_k asserts its own answer."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(solution)], cwd=TUTORIALS, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{solution.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
