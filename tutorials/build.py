"""Build the npegg book: execute every chapter as a notebook and write it out as HTML pages.

    python tutorials/build.py --out DIR [--small] [--jobs N] [--keep-going] [--only 03 ...]

Each chapter (``tutorials/NN_*.py``, percent format) and each solutions file
(``tutorials/solutions/NN_*.py``) is read by jupytext into a notebook and executed by nbclient in
a fresh Jupyter kernel, in its own folder, with ``NPEGG_TUTORIAL_SMALL`` set by ``--small`` and
the figures written to ``DIR/figures``. The pages are plain HTML written here: markdown through
markdown-it, LaTeX turned into MathML at build time by latex2mathml (browsers render MathML
natively, so the book needs no network and no JavaScript), code through Pygments, figures as PNG
files beside the pages. ``DIR/index.html`` is tutorials/README.md with a table of contents;
``DIR/references.html`` is tutorials/references.md; each document in docs/ (the int8
specification, the differences from the references) becomes ``DIR/docs/NAME.html``. Links between
sources (``02_x.py``, ``references.md``) become links between pages; a link to another file of
the repository links a copy of it in ``DIR/repo/``.

The build fails, exit status 1, naming the page and the cell (index and line in the source), if
a cell raises, writes a traceback or a warning to stderr, or a formula does not convert. It
writes ``DIR/book.json``: per page its status, time, figures and the claims it checked
(``_book.check``); tests/test_tutorials.py reads it. ``--keep-going`` finishes the other pages
before failing.

Build tools are the ``book`` extra: ``pip install -e ".[book]"``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent          # tutorials/
ROOT = HERE.parent                              # the repository
RECORD_MARK = "@@npegg-book-record@@"
RECORD_CELL = f"import json as _json, _book as _b\nprint({RECORD_MARK!r} + _json.dumps(_b.record()))"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BAD_STDERR = re.compile(r"\b\w*(Error|Warning)\b")   # on stderr; a traceback fails on either stream


@dataclass
class Page:
    """One source file and the HTML page it becomes."""
    src: Path                     # absolute path of the source
    out: str                      # path of the page inside DIR, e.g. "solutions/01_x.html"
    kind: str                     # "chapter", "solution" or "text" (markdown, not executed)
    title: str = ""
    cells: list = field(default_factory=list)
    record: dict = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    skipped: bool = False         # left out by --only: not run, not written, still linked


class BuildError(RuntimeError):
    """A page could not be built; the message names the page and the cell."""


# ---------------------------------------------------------------------------------- discovery

def discover() -> list[Page]:
    """Every page of the book, in reading order: index, chapters, solutions, references, docs/."""
    pages = [Page(HERE / "README.md", "index.html", "text")]
    pages += [Page(p, p.stem + ".html", "chapter") for p in sorted(HERE.glob("[0-9][0-9]_*.py"))]
    pages += [Page(p, "solutions/" + p.stem + ".html", "solution")
              for p in sorted((HERE / "solutions").glob("[0-9][0-9]_*.py"))]
    if (HERE / "references.md").is_file():
        pages.append(Page(HERE / "references.md", "references.html", "text"))
    pages += [Page(p, "docs/" + p.stem + ".html", "text") for p in sorted((ROOT / "docs").glob("*.md"))]
    return pages


def cell_lines(path: Path) -> list[int]:
    """1-based line of each ``# %%`` marker: where each notebook cell starts in the source."""
    return [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
            if line.startswith("# %%")]


def where(page: Page, index: int) -> str:
    lines = cell_lines(page.src)
    at = f", line {lines[index]}" if index < len(lines) else ""
    return f"{page.src.relative_to(ROOT)} cell {index}{at}"


# ---------------------------------------------------------------------------------- execution

async def execute(page: Page, timeout: int) -> None:
    """Run the page's notebook in a fresh kernel; fill page.cells and page.record, or page.error."""
    import tempfile

    import jupytext
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    import nbformat

    nb = jupytext.read(page.src)
    n = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(RECORD_CELL))
    # The kernel is this interpreter (whatever kernels Jupyter knows elsewhere), talking over local
    # sockets in a temporary folder.
    sockets = tempfile.TemporaryDirectory(prefix="npegg-book-")
    spec = Path(sockets.name) / "kernels" / "npegg-book"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "npegg book", "language": "python"}))
    km = AsyncKernelManager(kernel_name="npegg-book", transport="ipc", ip=os.path.join(sockets.name, "kernel"),
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(page.src.parent)}})
    t0 = time.perf_counter()
    try:
        with sockets:
            try:
                await client.async_execute()
            finally:                          # the client shuts down only kernels it started itself
                if km.has_kernel:
                    await km.shutdown_kernel(now=False)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        bad = next((i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error"
                                                              for o in c.get("outputs", []))), None)
        page.error = (f"{where(page, bad) if bad is not None and bad < n else page.src.relative_to(ROOT)}: "
                      f"{type(e).__name__}\n{ANSI.sub('', str(e))[-4000:]}")
    page.seconds = time.perf_counter() - t0
    if page.error:
        return
    record_out = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("name") == "stdout")
    page.cells = nb.cells[:n]
    for line in record_out.splitlines():
        if line.startswith(RECORD_MARK):
            page.record = json.loads(line[len(RECORD_MARK):])
    for i, cell in enumerate(page.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") != "stream":
                continue
            text = ANSI.sub("", o["text"])
            if "Traceback (most recent call last)" in text or (o["name"] == "stderr" and BAD_STDERR.search(text)):
                page.error = f"{where(page, i)}: wrote to {o['name']}:\n{text[-3000:]}"
                return


async def execute_all(pages: list[Page], jobs: int, timeout: int, keep_going: bool) -> None:
    gate = asyncio.Semaphore(jobs)
    failed = asyncio.Event()

    async def one(page: Page) -> None:
        async with gate:
            if failed.is_set() and not keep_going:
                page.error = "not run: an earlier page failed"
                return
            print(f"[run] {page.src.relative_to(ROOT)}", flush=True)
            await execute(page, timeout)
            status = "FAILED" if page.error else "ok"
            print(f"[{status}] {page.src.relative_to(ROOT)} in {page.seconds:.1f} s", flush=True)
            if page.error:
                failed.set()

    await asyncio.gather(*(one(p) for p in pages if p.kind != "text" and not p.skipped))


# ---------------------------------------------------------------------------------- rendering

# latex2mathml leaves a few commands as text (after \big, inside \text): spell them out.
_LEFTOVER = {r"\lfloor": "\u230a", r"\rfloor": "\u230b", r"\lceil": "\u2308", r"\rceil": "\u2309",
             r"\langle": "\u27e8", r"\rangle": "\u27e9", r"\_": "_", r"\{": "{", r"\}": "}", r"\%": "%",
             r"\$": "$", r"\&": "&amp;", r"\#": "#", r"\lVert": "\u2016", r"\rVert": "\u2016",
             r"\lvert": "|", r"\rvert": "|", r"\Vert": "\u2016", r"\vert": "|", r"\|": "\u2016"}


def mathml(latex: str, display: bool, where_: str) -> str:
    """LaTeX to MathML; raises BuildError if a command is left untranslated."""
    from latex2mathml.converter import convert
    try:
        out = convert(latex, display="block" if display else "inline")
    except Exception as e:  # latex2mathml raises its own exception types for bad input
        raise BuildError(f"{where_}: formula ${latex}$ does not convert: {type(e).__name__}: {e}") from e

    def fix(m: re.Match) -> str:
        text = m.group(1)
        for k, v in _LEFTOVER.items():
            text = text.replace(k, v)
        return ">" + text + "<"

    out = re.sub(r">([^<]*)<", fix, out)
    left = re.findall(r">([^<]*\\[A-Za-z]+[^<]*)<", out)
    if left:
        raise BuildError(f"{where_}: formula ${latex}$ leaves {left} untypeset")
    return out


# Maths is taken out before markdown sees it, as Jupyter does, so that markdown cannot break a
# formula (a display line starting with "+ " would otherwise open a list): code spans and fences
# are kept as they are, $$…$$ is display maths, $…$ inline (no space inside the dollars, no digit
# right after the closing one, no blank line within).
MATH = re.compile(r"(`+)(?:.|\n)*?\1|\$\$((?:.|\n)+?)\$\$"
                  r"|(?<![\\$\w])\$(?=\S)((?:(?!\n\s*\n)[^$])+?)(?<=[^\s\\])\$(?!\d)")
SLOT = re.compile(r"@@MATH(\d+)@@")


class Markdown:
    """Markdown to HTML, maths as MathML, links between sources turned into links between pages."""

    def __init__(self, page: Page, links: dict[Path, str], out_dir: Path):
        from markdown_it import MarkdownIt
        from mdit_py_plugins.anchors import anchors_plugin

        self.page, self.links, self.out_dir, self.here = page, links, out_dir, f"{page.src.relative_to(ROOT)}"
        self.md = (MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
                   .use(anchors_plugin, min_level=1, max_level=3))
        self.md.add_render_rule("link_open", lambda renderer, *a: self._link_open(renderer, *a))

    def _link_open(self, renderer, tokens, idx, options, env):
        tok = tokens[idx]
        href = tok.attrGet("href") or ""
        if href and not re.match(r"^[a-z]+:|^#", href):
            target, _, anchor = href.partition("#")
            dest = (self.page.src.parent / target).resolve()
            if dest in self.links:
                to = self.links[dest]
            elif dest.is_file() and ROOT in dest.parents:    # a repository file: a copy goes beside the book
                to = "repo/" + dest.relative_to(ROOT).as_posix()
                (self.out_dir / to).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dest, self.out_dir / to)
            else:
                raise BuildError(f"{self.here}: link {href!r} points to {dest}, which does not exist")
            new = os.path.relpath(to, os.path.dirname(self.page.out) or ".")
            tok.attrSet("href", new + (f"#{anchor}" if anchor else ""))
        return renderer.renderToken(tokens, idx, options, env)

    def render(self, text: str) -> tuple[str, str, list[tuple[str, str]]]:
        """(html, title = the first h1 as plain text, [(anchor, text) of every h2])."""
        formulas: list[tuple[str, bool]] = []

        def take(m: re.Match) -> str:
            if m.group(1) is not None:        # code: left alone
                return m.group(0)
            formulas.append((m.group(2), True) if m.group(2) is not None else (m.group(3), False))
            return f"@@MATH{len(formulas) - 1}@@"

        source = MATH.sub(take, text)
        tokens = self.md.parse(source)
        title, sections = "", []
        for i, t in enumerate(tokens):
            if t.type == "heading_open" and t.tag in ("h1", "h2"):
                plain = SLOT.sub(lambda m: formulas[int(m.group(1))][0].strip(), tokens[i + 1].content)
                if t.tag == "h1" and not title:
                    title = plain
                elif t.tag == "h2":
                    sections.append((t.attrGet("id") or "", plain))
        out = self.md.renderer.render(tokens, self.md.options, {})
        out = SLOT.sub(lambda m: mathml(*formulas[int(m.group(1))], self.here), out)
        return out, title, sections


def highlight(code: str) -> str:
    try:
        from pygments import highlight as pyg
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # Pygments comes with IPython; plain text if it is missing
        return f'<pre class="code"><code>{html.escape(code)}</code></pre>'
    return pyg(code, PythonLexer(), HtmlFormatter(cssclass="code", nowrap=False))


def render_outputs(cell, page: Page, out_dir: Path) -> str:
    parts, outputs = [], []
    for o in cell.get("outputs", []):   # consecutive pieces of one stream make one box
        if (outputs and o.get("output_type") == "stream" and outputs[-1].get("output_type") == "stream"
                and outputs[-1].get("name") == o.get("name")):
            outputs[-1] = {**outputs[-1], "text": outputs[-1]["text"] + o["text"]}
        else:
            outputs.append(o)
    for o in outputs:
        kind = o.get("output_type")
        if kind == "stream":
            cls = "stderr" if o.get("name") == "stderr" else "stdout"
            parts.append(f'<pre class="out {cls}">{html.escape(ANSI.sub("", o["text"]))}</pre>')
        elif kind in ("display_data", "execute_result"):
            data = o.get("data", {})
            if "image/png" in data:
                raw = base64.b64decode(data["image/png"])
                meta = o.get("metadata", {})
                name = (meta.get("npegg_figure") or meta.get("image/png", {}).get("npegg_figure")
                        or f"{Path(page.out).stem}-{hashlib.sha1(raw).hexdigest()[:10]}.png")
                (out_dir / "figures").mkdir(parents=True, exist_ok=True)
                (out_dir / "figures" / name).write_bytes(raw)
                src = os.path.relpath(f"figures/{name}", os.path.dirname(page.out) or ".")
                parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(name)}"></figure>')
            elif "text/plain" in data:
                parts.append(f'<pre class="out result">{html.escape(ANSI.sub("", data["text/plain"]))}</pre>')
    return "\n".join(parts)


CSS = """
body { font: 17px/1.55 Georgia, 'DejaVu Serif', serif; color: #1a1a1a; background: #fff; margin: 0; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 4rem; }
nav { font: 15px sans-serif; background: #f3f5f8; border-bottom: 1px solid #dde; padding: .5rem 1.5rem; }
nav a { margin-right: 1.2rem; color: #24528c; text-decoration: none; }
h1, h2, h3 { font-family: 'DejaVu Sans', sans-serif; line-height: 1.25; }
a { color: #24528c; }
pre { overflow-x: auto; padding: .6rem .8rem; font: 13.5px/1.4 'DejaVu Sans Mono', monospace; border-radius: 4px; }
.code { background: #f6f8fa; border-left: 3px solid #8aa4c8; margin: 1rem 0 .2rem; }
.code pre { margin: 0; padding: 0; background: none; }
pre.out { background: #fff; border: 1px solid #e4e4e4; margin: .2rem 0 1rem; color: #333; }
pre.stderr { background: #fff6f0; }
code { font-family: 'DejaVu Sans Mono', monospace; font-size: 90%; }
figure { margin: 1rem 0; text-align: center; } figure img { max-width: 100%; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 15px; }
td, th { border: 1px solid #ccc; padding: .25rem .5rem; vertical-align: top; }
math[display=block] { margin: .8rem 0; padding: .2rem 0; overflow-x: auto; overflow-y: hidden; }
.toc li { margin: .2rem 0; } .toc ul ul { font-size: 92%; }
footer { color: #777; font-size: 13px; margin-top: 3rem; }
/* Pygments (a light subset of its default style) */
.code .k, .code .kn, .code .kc, .code .ow { color: #0b3f9c; font-weight: bold; }
.code .s, .code .s1, .code .s2, .code .sa, .code .sd, .code .si { color: #2a7b2a; }
.code .c, .code .c1, .code .cm { color: #7a7a7a; font-style: italic; }
.code .mi, .code .mf, .code .mh { color: #9c4a00; } .code .nf, .code .nc { color: #6a2f9c; }
"""


def page_html(title: str, body: str, page: Page, nav: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n"
            f"<body>\n<nav>{nav}</nav>\n<main>\n{body}\n"
            f"<footer>Built from <code>{html.escape(str(page.src.relative_to(ROOT)))}</code> by "
            f"<code>tutorials/build.py</code>.</footer>\n</main>\n</body></html>\n")


def render(pages: list[Page], out_dir: Path, small: bool) -> None:
    """Write every page (the executed ones must have run) and the table of contents."""
    links = {p.src.resolve(): p.out for p in pages}
    order = [p for p in pages if p.kind == "chapter"]
    bodies, tocs = {}, {}
    for page in pages:
        md = Markdown(page, links, out_dir)
        if page.skipped:
            page.title, tocs[page.out] = page.src.stem, []
            continue
        if page.kind == "text":
            bodies[page.out], page.title, tocs[page.out] = md.render(page.src.read_text(encoding="utf-8"))
            continue
        parts, title, sections = [], "", []
        for i, cell in enumerate(page.cells):
            if cell.cell_type == "markdown":
                try:
                    body, t, s = md.render(cell.source)
                except BuildError as e:
                    raise BuildError(f"{where(page, i)}: {str(e).removeprefix(md.here + ': ')}") from e
                parts.append(f'<div class="md">{body}</div>')
                title, sections = title or t, sections + s
            elif cell.cell_type == "code" and cell.source.strip():
                parts.append(f'<div class="cell">{highlight(cell.source)}'
                             f"{render_outputs(cell, page, out_dir)}</div>")
        page.title, tocs[page.out] = title or page.src.stem, sections
        bodies[page.out] = "\n".join(parts)

    def rel(page: Page, target: str) -> str:
        return os.path.relpath(target, os.path.dirname(page.out) or ".")

    def toc(page: Page) -> str:
        items = []
        for p in order:
            subs = "".join(f'<li><a href="{rel(page, p.out)}#{a}">{html.escape(s)}</a></li>'
                           for a, s in tocs[p.out])
            items.append(f'<li><a href="{rel(page, p.out)}">{html.escape(p.title)}</a><ul>{subs}</ul></li>')
        extra = [p for p in pages if p.kind == "text" and p.out != "index.html"]
        items += [f'<li><a href="{rel(page, p.out)}">{html.escape(p.title)}</a></li>' for p in extra]
        sols = [p for p in pages if p.kind == "solution"]
        if sols:
            items.append("<li>Solutions to the exercises<ul>" + "".join(
                f'<li><a href="{rel(page, p.out)}">{html.escape(p.title)}</a></li>' for p in sols) + "</ul></li>")
        return f'<section class="toc"><h2 id="contents">Contents</h2><ul>{"".join(items)}</ul></section>'

    setting = "small setting" if small else "full setting"
    for page in [p for p in pages if not p.skipped]:
        nav = [f'<a href="{rel(page, "index.html")}">Contents</a>']
        if page in order:
            k = order.index(page)
            if k > 0:
                nav.insert(0, f'<a href="{rel(page, order[k - 1].out)}">&larr; {html.escape(order[k - 1].title)}</a>')
            if k + 1 < len(order):
                nav.append(f'<a href="{rel(page, order[k + 1].out)}">{html.escape(order[k + 1].title)} &rarr;</a>')
        if any(p.out == "references.html" for p in pages):
            nav.append(f'<a href="{rel(page, "references.html")}">References</a>')
        nav.append(f"<span>({setting})</span>")
        body = bodies[page.out]
        if page.out == "index.html":   # the contents go after the README's introduction
            cut = body.find("<h2")
            body = body + toc(page) if cut < 0 else body[:cut] + toc(page) + "\n" + body[cut:]
        dest = out_dir / page.out
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(page_html(page.title, body, page, " ".join(nav)), encoding="utf-8")


# ---------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Execute every chapter and write the book as HTML.")
    ap.add_argument("--out", required=True, type=Path, help="folder to write the book to (created)")
    ap.add_argument("--small", action="store_true", help="the small setting (what the tests run)")
    ap.add_argument("--jobs", type=int, default=1, help="chapters executed at once (default 1)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take (default 3600)")
    ap.add_argument("--keep-going", action="store_true", help="build the other pages when one fails")
    ap.add_argument("--only", nargs="+", metavar="TEXT", help="run and write only the chapters and solutions "
                    "whose file name contains one of these (e.g. --only 03): quicker while writing one")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.timeout < 1:
        ap.error(f"--timeout must be >= 1, got {args.timeout}")
    out_dir = args.out.resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "book.json").is_file():
        ap.error(f"--out {args.out} exists and is not an earlier build (no book.json): refusing to overwrite it")
    missing = [m for m in ("jupytext", "nbclient", "ipykernel", "latex2mathml", "mdit_py_plugins")
               if __import__("importlib").util.find_spec(m) is None]
    if missing:
        print(f"build.py needs {missing}: pip install -e \".[book]\"", file=sys.stderr)
        return 2

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    os.environ.update({"NPEGG_TUTORIAL_SMALL": "1" if args.small else "0", "MPLBACKEND": "Agg",
                       "NPEGG_TUTORIAL_OUT": str(out_dir / "figures"), "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                       "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)] + [p for p in
                                                     os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])})
    pages = discover()
    for p in pages:
        p.skipped = bool(args.only) and p.kind != "text" and not any(o in p.src.name for o in args.only)
    if args.only and all(p.skipped for p in pages if p.kind != "text"):
        ap.error(f"--only {' '.join(args.only)}: no chapter or solutions file matches")
    t0 = time.perf_counter()
    asyncio.run(execute_all(pages, args.jobs, args.timeout, args.keep_going))
    failed = [p for p in pages if p.error]
    if not failed:
        try:
            render(pages, out_dir, args.small)
        except BuildError as e:
            failed = [Page(ROOT, "", "text", error=str(e))]
    manifest = {"small": args.small, "seconds": time.perf_counter() - t0, "ok": not failed, "only": args.only,
                "pages": {p.src.relative_to(ROOT).as_posix(): {
                    "out": p.out, "kind": p.kind, "title": p.title, "error": p.error, "skipped": p.skipped,
                    "seconds": p.seconds, **{k: p.record.get(k) for k in ("figures", "claims", "plotting", "small")}}
                    for p in pages}}
    (out_dir / "book.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    for p in failed:
        print(f"\nBUILD FAILED: {p.error}", file=sys.stderr)
    print(f"[book] {len(pages)} pages in {manifest['seconds']:.1f} s -> {out_dir / 'index.html'}"
          + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
