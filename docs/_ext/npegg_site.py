"""The site's own Sphinx extension: what the book needs beyond myst-nb.

- Each chapter (``tutorials/NN_*.py``) links to its solutions page from its Exercises section,
  and each solutions file (``tutorials/solutions/NN_*.py``, plain Python) becomes a page with a
  title and a link back to its chapter's exercises. Both are added to the source text as it is
  read (``source-read``), so the files in the repository stay plain scripts.
- A chapter's last cell, ``book.finish(FIGURES)`` (plumbing: every declared figure was written),
  runs but is not shown.
- Each executed page ends with a hidden cell (tag ``remove-cell``) that calls
  ``_book.write_record(page)``: the record of what ran (setting, figures, checked claims) goes to
  ``$NPEGG_BOOK_RECORDS``, which ``docs/build.py`` gathers into ``build.json`` for the tests. A page
  whose record is missing did not run to its end.
- A display formula written over several lines of a markdown cell is joined onto one line
  first: markdown reads its structure before its maths, so a continuation line starting with
  ``+`` or ``-`` would otherwise open a list and cut the formula in two.
- Docstrings are written as plain text with Unicode formulas (STYLE.md), with a little reST
  (``code``, **bold**, ``::``). ``plain_docstring`` keeps that reST and protects the rest: an
  indented block (a formula laid out over lines) becomes a literal block, so its alignment stays,
  and ``|x|``, a lone ``*`` or a trailing ``_`` are escaped instead of read as markup.
- An output written to stderr (a warning, say), or one showing a traceback, is a build warning,
  with its text (``-W`` makes it a failure): a chapter that warns, or catches an error and prints
  it, has still gone wrong.
"""
from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

log = logging.getLogger(__name__)
CHAPTER = re.compile(r"^tutorials/(\d\d)_\w+$")
SOLUTION = re.compile(r"^tutorials/solutions/(\d\d)_\w+$")


def _title(chapter: Path) -> str:
    """The chapter's first heading, without its '#'."""
    for line in chapter.read_text(encoding="utf-8").splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return chapter.stem


# jupytext's header: the notebook's language, which myst-nb's highlighting needs before it runs.
HEADER = ("# ---\n# jupyter:\n#   kernelspec: {display_name: Python 3, language: python, name: python3}\n"
          "#   language_info: {name: python, pygments_lexer: ipython3}\n# ---\n\n")


def _record_cell(docname: str) -> str:
    return ('\n\n# %% tags=["remove-cell"]\n'
            f'import _book as _npegg_book\n_npegg_book.write_record({docname + ".py"!r})\n')


DISPLAY = re.compile(r"\$\$(?:[^$]|\$(?!\$))+?\$\$")


def join_display_maths(text: str) -> str:
    """Put each $$…$$ that spans comment lines of a markdown cell ('# ' prefixed) on one line."""
    def join(m: re.Match) -> str:
        span = m.group(0)
        if "\n" not in span or any(not line.startswith("#") for line in span.split("\n")[1:]):
            return span                       # one line already, or not inside a markdown cell
        return re.sub(r"\n#[ \t]*", " ", span)
    return DISPLAY.sub(join, text)


def on_source_read(app, docname: str, source: list) -> None:
    text = join_display_maths(source[0]) if CHAPTER.match(docname) else source[0]
    if m := CHAPTER.match(docname):
        stem = docname.split("/")[-1]
        solutions = Path(app.srcdir) / "tutorials" / "solutions" / f"{stem}.py"
        at = text.find("# ## Exercises")
        if solutions.is_file() and at >= 0:
            end = text.find("\n# %%", at)
            end = len(text) if end < 0 else end
            link = (f"\n\n# %% [markdown]\n# **Solutions**, each checked when the book is built: "
                    f"[solutions to chapter {int(m.group(1))}](solutions/{stem}.py).\n")
            text = text[:end] + link + text[end:]
        text = text.replace("\n# %%\nbook.finish(FIGURES)", '\n# %% tags=["remove-cell"]\nbook.finish(FIGURES)')
        source[0] = HEADER + text + _record_cell(docname)
    elif m := SOLUTION.match(docname):
        stem = docname.split("/")[-1]
        chapter = Path(app.srcdir) / "tutorials" / f"{stem}.py"
        title = _title(chapter) if chapter.is_file() else stem
        head = (f"# %% [markdown]\n# # Solutions: {title}\n#\n"
                f"# The exercises are at the end of [{title}](../{stem}.py#exercises). Each function below "
                f"answers one and checks its answer with an `assert`; the last lines run them all, and "
                f"their output follows.\n\n# %%\n")
        source[0] = HEADER + head + text + _record_cell(docname)


LITERAL = re.compile(r"(``.+?``)")
EMPHASIS = re.compile(r"(?<![\w*])(\*\*?)(?=[^\s*])(.+?)(?<=[^\s*\\])\1(?![\w*])")
BULLET = re.compile(r"(- |\* |\d+\. )")


def _escape(text: str) -> str:
    """Escape what reST would misread in plain text; leave ``literals`` and *emphasis* alone."""
    parts = LITERAL.split(text)
    for i in range(0, len(parts), 2):
        t = parts[i].replace("\\", "\\\\").replace("|", "\\|")
        t = re.sub(r"(\w)_(?=[\s\-.,:;!?/'\")\]}>]|$)", r"\1\\_", t)
        keep = {m.start(): m.group(0) for m in EMPHASIS.finditer(t)}
        out, j = [], 0
        while j < len(t):
            if j in keep:
                out.append(keep[j])
                j += len(keep[j])
            else:
                out.append("\\*" if t[j] == "*" else t[j])
                j += 1
        parts[i] = "".join(out)
    return "".join(parts)


def plain_docstring(app, what, name, obj, options, lines: list) -> None:
    """autodoc-process-docstring: turn a plain-text docstring into reST that says the same."""
    out: list[str] = []
    block = item = False

    def last() -> str:
        return next((x for x in reversed(out) if x.strip()), "")

    for line in lines:
        if not line.strip():
            out.append("")
            continue
        indented = line.startswith(" ")
        if block and indented:
            out.append(line)
            continue
        if block:
            block = False
            out.append("")
        if indented and item:
            out.append(_escape(line))
            continue
        if indented:
            if not last().rstrip().endswith("::"):
                if last().rstrip().endswith(":"):
                    k = max(i for i, x in enumerate(out) if x.strip())
                    out[k] = out[k].rstrip() + ":"
                else:
                    out += ["", "::"]
            out += ["", line]
            block = True
            continue
        starts_item = bool(BULLET.match(line))
        if starts_item and out and out[-1].strip() and not item:
            out.append("")
        if item and not starts_item and out and out[-1].strip():
            out.append("")
        item = starts_item
        out.append(_escape(line))
    lines[:] = out


def on_doctree_read(app, doctree) -> None:
    docname = app.env.docname
    for node in doctree.findall(nodes.literal_block):
        classes = node.get("classes", [])
        if "output" not in classes:
            continue
        if "stderr" in classes:
            log.warning(f"{docname}: a cell wrote to stderr:\n{node.astext()[-2000:]}", location=node)
        elif "Traceback (most recent call last)" in node.astext():
            log.warning(f"{docname}: an output shows a traceback:\n{node.astext()[-2000:]}", location=node)


def setup(app):
    app.connect("source-read", on_source_read)
    app.connect("doctree-read", on_doctree_read)
    app.connect("autodoc-process-docstring", plain_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
