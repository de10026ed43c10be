"""The site: ``docs/build.py --small`` builds it (Sphinx, myst-nb, sphinx-book-theme, MathJax served
from the site itself), and a real Chromium shows it.

The build is made once per session (the ``small_book`` fixture in conftest.py, shared with
tests/test_tutorials.py). The page checks read the HTML files: every link and anchor resolves, no
page loads anything from another machine, the build's plumbing never shows, a small build says
so on every page, chapters and solutions link each other, and the API reference documents every
public name of the library. The browser checks serve the site on localhost to Debian's headless
Chromium (tests/browser.py) and look at what it laid out: every formula typeset by MathJax with a
real size (numerators above denominators, superscripts raised, chapter 3's update equation with
its underbraces and stretched brackets), no TeX left as text, every figure decoded, no code block
cut off, the search page finding a term, and no request leaving the machine.
"""
import functools
import http.server
import importlib
import inspect
import io
import json
import pkgutil
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from browser import Browser

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
RAW_TEX = r"\$[^$\s][^$]*\$|\\(?:frac|sigma|mathbb|mathrm|sqrt|varepsilon|gg|top|hat|sum)\b|\\\(|\\\["
PLUMBING = ("[claim]", "[figure]", "[setting]", "[done]", "(text: ")


class Refs(HTMLParser):
    """Every href/src with its tag, and every id, of one page."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append((tag, a[key]))


def parse(path: Path) -> Refs:
    r = Refs()
    r.feed(path.read_text(encoding="utf-8"))
    return r


def text_of(path: Path) -> str:
    """A page's visible text, roughly: tags, scripts and styles removed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"<[^>]+>", "", html)


@pytest.fixture(scope="module")
def book(small_book):
    assert small_book.proc.returncode == 0, f"the site build failed:\n{small_book.log}"
    assert small_book.manifest["ok"] and small_book.manifest["small"]
    return small_book


def pages(book) -> list[Path]:
    """Every page Sphinx wrote (the top index.html only points to docs/index.html)."""
    return sorted(p for p in book.html.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.main_pass_only
def test_every_chapter_and_solution_has_a_page_linked_from_the_start_page(book):
    start = book.html / "docs" / "index.html"
    linked = {(start.parent / urlparse(h).path).resolve() for t, h in parse(start).refs if t == "a"}
    for chapter in CHAPTERS:
        for page in (book.html / "tutorials" / f"{chapter.stem}.html",
                     book.html / "tutorials" / "solutions" / f"{chapter.stem}.html"):
            assert page.is_file() and page.resolve() in linked, f"{page.relative_to(book.html)} missing or not linked"
    for name in ("README", "references"):
        assert (book.html / "tutorials" / f"{name}.html").resolve() in linked
    assert (book.html / "docs" / "api" / "index.html").resolve() in linked


@pytest.mark.main_pass_only
def test_chapters_and_solutions_link_each_other(book):
    """A chapter links its solutions page; the solutions page has a title and links back to the
    chapter's exercises."""
    for chapter in CHAPTERS:
        page = book.html / "tutorials" / f"{chapter.stem}.html"
        solution = book.html / "tutorials" / "solutions" / f"{chapter.stem}.html"
        assert f"solutions/{chapter.stem}.html" in {h for t, h in parse(page).refs if t == "a"}, chapter.stem
        assert f"../{chapter.stem}.html#exercises" in {h for t, h in parse(solution).refs if t == "a"}, chapter.stem
        assert re.search(r"<h1>Solutions: Chapter \d+", solution.read_text(encoding="utf-8")), solution


@pytest.mark.main_pass_only
def test_links_resolve_and_nothing_comes_from_another_machine(book):
    """Every relative link and resource points to a file of the site (an anchor to an id in it);
    scripts, styles, fonts and images are all the site's own: only <a> may point elsewhere."""
    ids: dict[Path, set] = {}
    checked = 0
    for page in pages(book):
        for tag, ref in parse(page).refs:
            url = urlparse(ref)
            if url.scheme or ref.startswith("//"):
                assert tag == "a" and url.scheme in ("http", "https", "mailto"), f"{page.name}: <{tag}> {ref}"
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            assert target.is_file(), f"{page.relative_to(book.html)}: broken <{tag}> {ref}"
            if url.fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = parse(target).ids
                assert url.fragment in ids[target], f"{page.relative_to(book.html)}: no #{url.fragment} in {target.name}"
            checked += 1
    assert checked > 50 * len(CHAPTERS)


@pytest.mark.main_pass_only
def test_plumbing_never_shows_and_a_small_build_says_so(book):
    """No [claim]/[figure]/[setting]/[done] line and no path of the build folder on any page;
    every page carries the small-build notice at its top (all but the top index.html, which only
    sends the browser on to docs/index.html)."""
    for page in [p for p in pages(book) if p != book.html / "index.html"]:
        text = text_of(page)
        shown = [p for p in PLUMBING if p in text]
        assert not shown, f"{page.relative_to(book.html)} shows {shown}"
        assert str(book.out) not in text, f"{page.relative_to(book.html)} shows a path of the build folder"
        html = page.read_text(encoding="utf-8")
        banner = html.find("Small build: every chapter ran in its small setting")
        assert 0 <= banner < html.find('id="main-content"') or 0 <= banner < html.find("<article"), \
            f"{page.relative_to(book.html)} has no small-build notice above its content"


def library_modules() -> list[str]:
    """Every module of the ES library: npegg minus the program (npegg/program) and the __main__ modules."""
    import npegg
    names = [m.name for m in pkgutil.walk_packages(npegg.__path__, "npegg.")]
    return sorted(n for n in names if not n.startswith("npegg.program") and not n.endswith(".__main__"))


@pytest.mark.main_pass_only
def test_the_api_reference_documents_every_public_name(book):
    """Each library module has a page, and each public class and function defined in it (name not
    starting with '_') is documented there, with its own anchor."""
    missing = []
    for name in library_modules():
        page = book.html / "docs" / "api" / "generated" / f"{name}.html"
        assert page.is_file(), f"no API page for {name}"
        ids = parse(page).ids
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                    and getattr(obj, "__module__", None) == name and f"{name}.{attr}" not in ids):
                missing.append(f"{name}.{attr}")
    assert not missing, f"not in the API reference: {missing}"


@pytest.fixture(scope="module")
def served(book):
    """The site on a local HTTP server (as a reader's browser would see it), for the browser."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(book.html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


PAGE_FACTS = """(async () => {
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
  const visible = e => e.offsetParent !== null || e.getClientRects().length > 0;
  const box = e => e.getBoundingClientRect();
  const line = parseFloat(getComputedStyle(document.querySelector('article') || document.body).lineHeight) || 24;
  const maths = Array.from(document.querySelectorAll('mjx-container')).filter(visible);
  const fracs = Array.from(document.querySelectorAll('mjx-frac')).filter(visible).map(f => {
    const n = f.querySelector('mjx-num'), d = f.querySelector('mjx-den');
    return !!(n && d) && box(n).bottom <= box(d).top + 1 && box(n).height > 0 && box(d).height > 0; });
  const sups = Array.from(document.querySelectorAll('mjx-msup')).filter(visible).map(s => {
    const base = s.firstElementChild, sc = s.querySelector(':scope > mjx-script');
    return !!(base && sc) && box(sc).top + box(sc).bottom < box(base).top + box(base).bottom && box(sc).height > 0; });
  const body = (document.querySelector('article') || document.body).cloneNode(true);
  body.querySelectorAll('pre, code, mjx-container, script, style, .highlight').forEach(e => e.remove());
  const sidebar = (document.querySelector('.bd-sidebar-primary') || document.createElement('div')).cloneNode(true);
  sidebar.querySelectorAll('mjx-container').forEach(e => e.remove());
  const pres = Array.from(document.querySelectorAll('article pre')).filter(visible);
  const cut = pres.filter(p => {
    const st = getComputedStyle(p), scrolls = ['auto', 'scroll'].includes(st.overflowX);
    const wraps = ['pre-wrap', 'break-spaces', 'pre-line'].includes(st.whiteSpace);
    const outer = p.closest('article').getBoundingClientRect();
    return (p.scrollWidth > p.clientWidth + 1 && !scrolls && !wraps) || box(p).right > outer.right + 1; });
  const imgs = Array.from(document.querySelectorAll('article .cell_output img'));
  return {line, maths: maths.length, sized: maths.filter(m => box(m).width > 0 && box(m).height > 0).length,
          fracs: fracs.length, stacked: fracs.filter(x => x).length, sups: sups.length, raised: sups.filter(x => x).length,
          rawTex: (body.textContent.match(/%s/g) || []).slice(0, 5),
          sidebarTex: (sidebar.textContent.match(/%s/g) || []).slice(0, 5),
          pres: pres.length, cut: cut.map(p => p.textContent.slice(0, 80)),
          images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length};
})()""" % (RAW_TEX, RAW_TEX)

UPDATE_EQUATION = """(async () => {
  await MathJax.startup.promise;
  const item = Array.from(MathJax.startup.document.math).find(m => m.math.includes('underbrace') && m.math.includes('Pr\\\\times I'));
  if (!item) return null;
  const root = item.typesetRoot, r = root.getBoundingClientRect();
  const stretched = Array.from(root.querySelectorAll('mjx-stretchy-v')).map(s => s.getBoundingClientRect().height);
  return {display: root.getAttribute('display'), width: r.width, height: r.height,
          underbraces: root.querySelectorAll('mjx-munder').length, stretched: stretched,
          line: parseFloat(getComputedStyle(root.parentElement).lineHeight) || parseFloat(getComputedStyle(root.parentElement).fontSize) * 1.5};
})()"""

SEARCH = """(async () => {
  for (let i = 0; i < 100; i++) {
    const hits = document.querySelectorAll('#search-results ul.search li');
    if (hits.length) return Array.from(hits).map(h => h.querySelector('a').getAttribute('href'));
    await new Promise(r => setTimeout(r, 200));
  }
  return [];
})()"""


def ink(png: bytes) -> float:
    """The fraction of pixels that are not white."""
    import matplotlib.image
    px = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]   # (H, W, 3) floats in [0, 1]
    return float((px.min(axis=2) < 0.9).mean())


# The browser tests ask for `chromium` first: pytest sets fixtures up in that order, so a missing
# browser is installed (or reported) before the minutes-long build of the site, not after it.
@pytest.mark.main_pass_only
def test_pages_render_in_chromium(chromium, book, served):
    """The start page, every chapter, a solutions page and an API page in headless Chromium:
    formulas typeset with a size, fractions stacked, superscripts raised (centre above the base's), no TeX left as text (in
    the page or its sidebar), every figure decoded, no code block cut, ink on the screen."""
    declared = {c.stem: len(book.manifest["pages"][f"tutorials/{c.name}"]["figures"]) for c in CHAPTERS}
    urls = ["docs/index.html", *(f"tutorials/{c.stem}.html" for c in CHAPTERS),
            f"tutorials/solutions/{CHAPTERS[0].stem}.html", "docs/api/generated/npegg.es.html"]
    stacked = raised = 0
    with Browser(width=1300, height=1000) as browser:
        for url in urls:
            browser.open(f"{served}/{url}")
            facts = browser.evaluate(PAGE_FACTS)
            assert facts["sized"] == facts["maths"], f"{url}: formulas with no size: {facts}"
            assert facts["stacked"] == facts["fracs"], f"{url}: fractions not stacked: {facts}"
            assert facts["raised"] == facts["sups"], f"{url}: superscripts not raised: {facts}"
            assert not facts["rawTex"] and not facts["sidebarTex"], f"{url}: TeX shown as text: {facts}"
            assert not facts["cut"], f"{url}: code cut off at the right: {facts['cut']}"
            assert facts["loaded"] == facts["images"], f"{url}: images not decoded: {facts}"
            stem = Path(url).stem
            if url.startswith("tutorials/") and "solutions" not in url:
                assert facts["maths"] >= 5 and facts["pres"] >= 3, (url, facts)
                assert facts["images"] == declared[stem] > 0, f"{url}: {facts['images']} figures, declares {declared[stem]}"
            stacked += facts["fracs"]
            raised += facts["sups"]
            assert ink(browser.screenshot()) > 0.01, f"{url}: blank screenshot"
    assert stacked > 20 and raised > 50, "the book has too few fractions or superscripts to check the layout with"


@pytest.mark.main_pass_only
def test_chapter_3_update_equation_is_typeset(chromium, book, served):
    """The one-matmul update of chapter 3, Σ fₙ Âₙ Bₙᵀ = [f₁Â₁ ⋯ f_PÂ_P] [B₁ᵀ; ⋮; B_Pᵀ]: a display
    formula with both underbraces and brackets stretched over the three-row column, several text
    lines tall."""
    with Browser(width=1300, height=1000) as browser:
        browser.open(f"{served}/tutorials/03_low_rank_perturbations.html")
        eq = browser.evaluate(UPDATE_EQUATION)
    assert eq is not None, "chapter 3's update equation is not on the page"
    assert eq["display"] == "true" and eq["underbraces"] >= 2, eq
    assert eq["height"] > 2.5 * eq["line"] and eq["width"] > 10 * eq["line"], eq
    assert len(eq["stretched"]) >= 2 and min(eq["stretched"]) > 2 * eq["line"], f"brackets not stretched: {eq}"


@pytest.mark.main_pass_only
def test_search_finds_a_term_and_no_request_leaves_the_machine(chromium, book, served):
    """The search page lists the chapters that mention 'antithetic'; over the pages opened, every
    request (page, script, font, search index) went to the local server."""
    with Browser(width=1300, height=1000) as browser:
        browser.open(f"{served}/search.html?q=antithetic")
        hits = browser.evaluate(SEARCH)
        assert any("01_es_from_scratch" in h for h in hits), hits
        for url in ("docs/index.html", "tutorials/03_low_rank_perturbations.html"):
            browser.open(f"{served}/{url}")
            browser.evaluate("(window.MathJax ? MathJax.startup.promise : Promise.resolve()).then(() => 1)")
        requested = browser.requests()
    outside = [u for u in requested if not u.startswith((served, "data:", "about:", "blob:"))]
    assert not outside, f"requests that left the machine: {outside[:10]}"
    assert any(u.endswith(".woff") or "woff" in u for u in requested), "MathJax's fonts were not loaded"
    assert any("mathjax" in u for u in requested), requested


# --- the build itself fails loudly -------------------------------------------------------------

def fake_repo(tmp_path: Path, chapter: str) -> Path:
    """A repository with the site's build files, _book.py and one chapter, 01_fake.py."""
    import shutil
    docs = tmp_path / "docs"
    for name in ("conf.py", "build.py"):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "docs" / name, docs / name)
    for folder in ("_ext", "_templates", "_static", "_extra"):
        shutil.copytree(ROOT / "docs" / folder, docs / folder)
    (docs / "index.md").write_text("# Fake\n\n```{toctree}\n../tutorials/01_fake\n```\n")
    (tmp_path / "tutorials").mkdir()
    shutil.copyfile(TUTORIALS / "_book.py", tmp_path / "tutorials" / "_book.py")
    (tmp_path / "tutorials" / "01_fake.py").write_text(chapter)
    return tmp_path


HEAD = '''# %% [markdown]
# # Chapter 1 — fake
# Some text with $x^2$.

# %%
import _book as book
SMALL = book.choose_setting(None)
'''


@pytest.mark.main_pass_only
@pytest.mark.parametrize("body, message", [
    ('book.check("slope", 0.9, 0.72, tol=0.01)\n', "ClaimDrift"),
    ('import numpy as np\nnp.log(np.zeros(1))\n', "RuntimeWarning"),
    ('import sys, traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc(file=sys.stdout)\n',
     "traceback"),
], ids=["claim-drifts", "warns", "prints-traceback"])
def test_the_build_fails_on_a_drifted_claim_a_warning_or_a_traceback(tmp_path, body, message):
    """A chapter whose checked claim drifts, that writes a warning, or that prints a traceback
    fails the build (exit status 1), naming the chapter and the problem."""
    repo = fake_repo(tmp_path / "repo", HEAD + "\n# %%\n" + body)
    proc = subprocess.run([sys.executable, str(repo / "docs" / "build.py"), "--out", str(tmp_path / "out"),
                           "--small"], capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    assert "01_fake" in log and message in log, log
    manifest = json.loads((tmp_path / "out" / "build.json").read_text())
    assert manifest["ok"] is False


def test_the_build_refuses_bad_arguments_before_any_work(tmp_path):
    """--out pointing at a folder with someone's files (no build.json) is refused, as is --jobs 0."""
    (tmp_path / "notes.txt").write_text("mine")
    build = str(ROOT / "docs" / "build.py")
    proc = subprocess.run([sys.executable, build, "--out", str(tmp_path), "--small"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--out" in proc.stderr and "refusing" in proc.stderr, proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    proc = subprocess.run([sys.executable, build, "--out", str(tmp_path / "b"), "--jobs", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--jobs must be >= 1" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, build, "--out", str(tmp_path / "c"), "--only", "99_nothing"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no chapter or solutions file matches" in proc.stderr, proc.stderr
