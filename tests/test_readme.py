"""The README's promises: its two commands, its quick start (run as written), its links into the site."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_the_two_commands():
    assert README.index("```bash") < README.index("\n## ")
    main, tests = _commands()
    assert "npegg train" in main and "pip install" in main
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in [line.strip() for line in ci]


def test_quick_start_runs_and_reaches_the_stated_loss(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    printed = dict(zip(lines[0::2], map(float, lines[1::2])))
    assert set(printed) == {"250", "500", "750", "1000"}
    # A bar, not the README's digits: those are one float trajectory, and 1000 ES epochs amplify the
    # last bits of BLAS's summation order, which differs between NumPy/OpenBLAS builds, thread counts
    # and CPUs (docs/determinism.md). Measured on the CI machine with the example's one BLAS thread:
    # NumPy 2.4.6 prints the README's four numbers exactly (on 2 threads, before the example set its
    # threads, it printed 770.9 / 369.95 / 11.67 / 2.534); another machine or build may end
    # elsewhere, and is held to the quality the README promises instead.
    assert printed["1000"] <= 3.0, printed            # the bar (reference JAX: 2.36 and 3.00)
    assert printed["1000"] < printed["250"] / 100


def test_readme_is_a_front_door_whose_links_resolve():
    """About a hundred lines that link into the site's pages (the book, the guide, the reference),
    every relative link to a file of the repository, and the sentence on other machines' digits."""
    assert len(README.splitlines()) <= 130, f"README.md has {len(README.splitlines())} lines"
    links = [m for m in re.findall(r"\]\(([^)\s]+)\)", README) if not re.match(r"[a-z]+:|#", m)]
    broken = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert not broken, f"README.md links to missing files: {broken}"
    for page in ("tutorials/README.md", "docs/guide/index.md", "docs/guide/train.md", "docs/determinism.md"):
        assert page in links, f"README.md does not link {page}"
    assert "python docs/build.py" in README
