"""Sphinx configuration of npegg's site: the book (tutorials/, executed), the guide, the API.

Built by ``python docs/build.py`` (see that file), which runs ``sphinx-build -c docs`` with the
repository as the source folder, so that every link between chapters, docs and code keeps the
path it has in the repository. Only the files ``include_patterns`` names become pages.
"""
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext"), str(ROOT / "tutorials")]
SMALL = os.environ.get("NPEGG_TUTORIAL_SMALL", "") not in ("", "0")

project = "npegg"
author = "the npegg authors"
copyright = "npegg contributors, MIT licence"
root_doc = "docs/index"
include_patterns = ["docs/index.md", "docs/*.md", "docs/guide/*.md", "docs/api/**",
                    "tutorials/README.md", "tutorials/references.md",
                    "tutorials/[0-9][0-9]_*.py", "tutorials/solutions/[0-9][0-9]_*.py"]
exclude_patterns = ["build", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]          # folders here are relative to docs/

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax",
              "npegg_site"]

# --- the book: myst-nb reads the percent-format chapters through jupytext and runs each one in a
# fresh kernel at build time; a cell that raises (a drifted claim among them) fails the build (a warning,
# with the traceback, which docs/build.py turns into a failure once every page has been tried).
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"
nb_execution_timeout = int(os.environ.get("NPEGG_SITE_CELL_TIMEOUT", "3600"))
nb_execution_raise_on_error = False   # logged as a warning, and -W fails the build after every page is tried
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "show"          # and docs/_ext/npegg_site.py makes it a build warning, with its text
nb_execution_excludepatterns = [p for p in os.environ.get("NPEGG_SITE_SKIP", "").split(os.pathsep) if p]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# --- the API reference: one page per module of the library, every public name from its docstring.
autosummary_generate = True
autosummary_ignore_module_all = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}   # every public name
autodoc_typehints = "description"
autodoc_inherit_docstrings = False     # a method without its own docstring does not borrow, say, pytest's
autodoc_mock_imports = ["pytest", "hypothesis"]   # npegg.conformance's test-side modules import them;
# documenting those modules needs only their names, so the API pages build with or without them

# --- maths: MathJax 3 served from the site's own _static folder (the sphinx-mathjax-offline wheel
# carries MathJax 3.2.2's files; the `docs` extra in pyproject.toml says why this one), so a page
# never asks a CDN for anything.
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None:
    raise RuntimeError('MathJax is not installed: pip install -e ".[docs]"')
html_static_path = ["_static", str(Path(_mathjax.submodule_search_locations[0]) / "static")]
mathjax_path = "mathjax/tex-chtml.js"

# --- the look: sphinx-book-theme (the theme of the JAX and Jupyter Book documentation).
html_theme = "sphinx_book_theme"
html_title = "npegg"
html_theme_options = {
    "show_toc_level": 2,
    "show_navbar_depth": 1,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
if SMALL:
    html_theme_options["announcement"] = (
        "Small build: every chapter ran in its small setting (seconds, what the tests run), so the "
        "outputs and figures below come from that run. The numbers the text quotes are the full "
        "setting's, checked only by a full build (<code>python docs/build.py</code>).")
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
suppress_warnings = ["mystnb.unknown_mime_type"]
html_extra_path = ["_extra"]   # index.html at the site's top, pointing to docs/index.html
