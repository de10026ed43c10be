"""The rendered book: ``tutorials/build.py --small`` builds it, and a real Chromium shows it.

The build is made once per session (the ``small_book`` fixture in conftest.py, shared with
tests/test_tutorials.py). The page checks read the HTML; the browser checks open the pages in
Debian's headless Chromium (tests/browser.py, DevTools protocol over a pipe) and look at what it
laid out and painted: every figure decoded, every formula typeset as MathML (a fraction's
numerator above its denominator, which only a MathML layout does), no TeX left as text, and a
screenshot that is not blank, with a figure's colours on it.
"""
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from browser import Browser

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
RAW_TEX = r"\$[^$\s][^$]*\$|\\(?:frac|sigma|mathbb|mathrm|sqrt|varepsilon)\b"   # $…$ or a TeX command


class Refs(HTMLParser):
    """Every href/src, every id, and every <script> or external resource in a page."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.scripts = [], set(), 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        self.scripts += tag == "script"
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append((tag, a[key]))


def parse(path: Path) -> Refs:
    r = Refs()
    r.feed(path.read_text(encoding="utf-8"))
    return r


@pytest.fixture(scope="module")
def book(small_book):
    assert small_book.proc.returncode == 0, f"the book build failed:\n{small_book.log}"
    assert small_book.manifest["ok"] and small_book.manifest["small"]
    return small_book


def test_every_chapter_has_a_page_and_the_index_links_them(book):
    index = parse(book.out / "index.html")
    linked = {href.split("#")[0] for tag, href in index.refs if tag == "a"}
    for chapter in CHAPTERS:
        assert (book.out / f"{chapter.stem}.html").is_file(), chapter.name
        assert f"{chapter.stem}.html" in linked, f"index.html does not link {chapter.stem}.html"
    assert "references.html" in linked and (book.out / "references.html").is_file()


def test_links_resolve_and_nothing_is_fetched_from_the_network(book):
    """Every relative link and image points to a file of the book (and an anchor to an id in
    it); no page loads a script or anything over the network, so it reads offline."""
    pages = sorted(book.out.rglob("*.html"))
    ids = {p: parse(p).ids for p in pages}
    checked = 0
    for page in pages:
        refs = parse(page)
        assert refs.scripts == 0, f"{page.name} has a <script>"
        for tag, ref in refs.refs:
            url = urlparse(ref)
            if url.scheme:
                assert tag == "a" and url.scheme in ("http", "https", "mailto"), f"{page.name}: {tag} {ref}"
                continue
            target = (page.parent / url.path).resolve() if url.path else page
            assert target.is_file(), f"{page.relative_to(book.out)}: broken {tag} {ref}"
            if url.fragment:
                assert url.fragment in ids[target], f"{page.relative_to(book.out)}: no #{url.fragment} in {target.name}"
            checked += 1
    assert checked > 2 * len(CHAPTERS)


def test_formulas_are_mathml(book):
    """Every chapter's maths became MathML at build time; no TeX is left in the prose."""
    for chapter in CHAPTERS:
        page = (book.out / f"{chapter.stem}.html").read_text(encoding="utf-8")
        assert page.count("<math ") >= 5, chapter.name
        prose = re.sub(r"<(pre|code|math|style)\b.*?</\1>", "", page, flags=re.S)
        left = re.findall(RAW_TEX, re.sub(r"<[^>]+>", "", prose))
        assert not left, f"{chapter.stem}.html: TeX left as text: {left[:5]}"


PAGE_FACTS = """(() => {
  const imgs = Array.from(document.images);
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, math, style').forEach(e => e.remove());
  const fracs = Array.from(document.querySelectorAll('mfrac')).map(f => {
    const a = f.children[0].getBoundingClientRect(), b = f.children[1].getBoundingClientRect();
    return a.bottom <= b.top + 1 && a.height > 0 && b.height > 0; });
  const sups = Array.from(document.querySelectorAll('msup')).map(s => {
    const a = s.children[0].getBoundingClientRect(), b = s.children[1].getBoundingClientRect();
    return b.top < a.top && b.height > 0; });
  return {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          maths: document.querySelectorAll('math').length,
          mathWidth: Array.from(document.querySelectorAll('math')).filter(m => m.getBoundingClientRect().width > 0).length,
          fracs: fracs.length, fracsStacked: fracs.filter(x => x).length,
          sups: sups.length, supsRaised: sups.filter(x => x).length,
          rawTex: (clone.textContent.match(%s) || []).slice(0, 5),
          height: document.body.scrollHeight};
})()""" % f"/{RAW_TEX}/g"


def ink(png: bytes):
    """(fraction of pixels that are not white, fraction that are clearly coloured)."""
    import matplotlib.image
    px = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]   # (H, W, 3) floats in [0, 1]
    not_white = (px.min(axis=2) < 0.9).mean()
    coloured = ((px.max(axis=2) - px.min(axis=2)) > 0.3).mean()
    return not_white, coloured


def test_pages_render_in_chromium(book):
    """Open the index and every chapter in headless Chromium: all figures load, formulas are laid
    out as MathML, no TeX shows as text, and the screenshots have ink (and colour on a figure)."""
    figures = {e["out"]: len(e["figures"] or []) for e in book.manifest["pages"].values()}
    stacked = raised = 0
    with Browser(width=1100, height=1400) as browser:
        browser.open((book.out / "index.html").as_uri())
        assert browser.evaluate("document.querySelectorAll('a[href$=\".html\"]').length") >= len(CHAPTERS)
        text_ink, _ = ink(browser.screenshot())
        assert text_ink > 0.01, f"index.html screenshot is blank ({text_ink:.2%} of pixels not white)"
        for chapter in CHAPTERS:
            browser.open((book.out / f"{chapter.stem}.html").as_uri())
            facts = browser.evaluate(PAGE_FACTS)
            name = chapter.stem
            assert facts["images"] == figures[f"{name}.html"] > 0, (name, facts, figures[f"{name}.html"])
            assert facts["loaded"] == facts["images"], f"{name}: images not decoded: {facts}"
            assert facts["maths"] >= 5 and facts["mathWidth"] == facts["maths"], (name, facts)
            assert facts["fracsStacked"] == facts["fracs"], f"{name}: fractions not typeset: {facts}"
            assert facts["supsRaised"] == facts["sups"], f"{name}: superscripts not raised: {facts}"
            assert not facts["rawTex"], f"{name}: TeX shown as text: {facts['rawTex']}"
            stacked += facts["fracs"]
            raised += facts["sups"]
            text_ink, _ = ink(browser.screenshot())
            assert text_ink > 0.01, f"{name}: blank screenshot ({text_ink:.2%} of pixels not white)"
            browser.evaluate("document.images[0].scrollIntoView({block: 'center'}), 0")
            _, colour = ink(browser.screenshot())
            assert colour > 0.001, f"{name}: no colour on screen at its first figure ({colour:.3%})"
    assert stacked > 0 and raised > 0, "the book has no fractions or superscripts to check the layout with"


def fake_book(tmp_path: Path, chapters: dict) -> Path:
    """A repository with build.py, _book.py, a README and the given chapters (name -> source)."""
    tut = tmp_path / "tutorials"
    tut.mkdir()
    for name in ("build.py", "_book.py"):
        (tut / name).write_text((TUTORIALS / name).read_text())
    (tut / "README.md").write_text("# A book\n\n" + "".join(f"- [{n}]({n})\n" for n in chapters))
    for name, source in chapters.items():
        (tut / name).write_text(source)
    return tut


BAD = '''# %% [markdown]
# # Chapter 1 — fails
# Some text with $x^2$.

# %%
import _book as book
SMALL = book.choose_setting(None)
x = 1

# %%
raise ValueError("the computed value drifted")
'''

WARNS = '''# %% [markdown]
# # Chapter 2 — warns

# %%
import numpy as np
np.log(np.zeros(1))
'''

TRACE = '''# %% [markdown]
# # Chapter 3 — prints a traceback and carries on

# %%
import sys, traceback
try:
    1 / 0
except ZeroDivisionError:
    traceback.print_exc(file=sys.stdout)
'''


@pytest.mark.parametrize("name, source, message", [
    ("01_bad.py", BAD, "tutorials/01_bad.py cell 2, line 10: CellExecutionError"),
    ("02_warns.py", WARNS, "tutorials/02_warns.py cell 1, line 4: wrote to stderr"),
    ("03_trace.py", TRACE, "tutorials/03_trace.py cell 1, line 4: wrote to stdout"),
], ids=["raises", "warns", "prints-traceback"])
def test_build_fails_naming_the_chapter_and_cell(tmp_path, name, source, message):
    """A chapter that raises, writes a warning, or prints a traceback fails the build: exit
    status 1, the file, the cell and its line named, and the error shown."""
    import subprocess
    import sys
    tut = fake_book(tmp_path, {name: source})
    proc = subprocess.run([sys.executable, str(tut / "build.py"), "--out", str(tmp_path / "out"), "--small"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert {"01_bad.py": "drifted", "02_warns.py": "RuntimeWarning", "03_trace.py": "ZeroDivisionError"}[name] \
        in proc.stderr
    manifest = json.loads((tmp_path / "out" / "book.json").read_text())
    assert manifest["ok"] is False and manifest["pages"][f"tutorials/{name}"]["error"]


def test_build_refuses_to_overwrite_a_folder_that_is_not_a_book(tmp_path):
    """--out pointing at a folder with someone's files (no book.json) is refused before any work."""
    import subprocess
    import sys
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, str(TUTORIALS / "build.py"), "--out", str(tmp_path), "--small"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--out" in proc.stderr and "refusing" in proc.stderr, proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    proc = subprocess.run([sys.executable, str(TUTORIALS / "build.py"), "--out", str(tmp_path / "b"), "--jobs", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--jobs must be >= 1" in proc.stderr, proc.stderr
