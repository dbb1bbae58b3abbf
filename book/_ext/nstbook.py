"""Sphinx extension of the course book (loaded by ``book/_config.yml``, ``sphinx.local_extensions``).

It adds what the static configuration cannot say:

* **Quick mode on every page.** When the book is built with ``NSTLIB_QUICK=1`` (the notebooks then run at
  smoke-test scale, offline), every page carries the theme's announcement banner saying so.
* **One execution cache per mode and library version.** jupyter-cache keys a notebook on its code cells
  only; the outputs also depend on quick mode and on nstlib. The cache therefore lives in
  ``<build>/.jupyter_cache/<quick|full>-<hash of nstlib and its data>``, and the same two facts are
  Sphinx configuration values, so a change re-reads (and, where needed, re-executes) every notebook.
  Older caches of the same mode are removed.
* **A shorter cell timeout in quick mode** (:data:`QUICK_TIMEOUT` seconds), so a hung cell fails CI fast.
* **Parallel execution in quick mode.** Before Sphinx reads the pages, the notebooks missing from the cache run
  in parallel (jupyter-cache's ``local-parallel`` executor, one process per CPU core) into the same cache that
  myst-nb reads. A notebook that fails there is left out and executed again by myst-nb, which reports the error
  as usual. Full builds execute one notebook at a time (GPU memory, and honest execution times).
* **The repository URL is checked**: ``repository.url`` must equal ``pyproject.toml``'s
  ``[project.urls] Repository``, the setting the README badges and the notebooks' setup cells use.
* **The gallery directive** ``grid-figure``: the figure and table of one papermill batch (``book/grids``),
  or, when the batch has not run yet, a note saying how to make it (the build never fails on that).
* **Pages that render offline.** The maths is typeset by a local copy of MathJax 3 (the files of the
  ``sphinx-mathjax-offline`` package, copied into ``_static/mathjax``; without that package the build says so and
  falls back to the CDN), the notebooks' "Open in Colab" badge is a local SVG (``book/_static/colab-badge.svg``)
  instead of an image on colab.research.google.com, and ``book/_static/nstbook.css`` wraps long code lines and
  printed tables inside the text column and styles the notebooks' HTML tables (``nstlib.html_table``).
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.metadata
import os
import re
import shutil
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dev dependency there)
    import tomli as tomllib
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.errors import ConfigError
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import nstlib
from nstlib import config as nstconfig
from nstlib.course.book import gallery_output
from nstlib.data import samples as nstsamples

LOGGER = logging.getLogger(__name__)

QUICK_TIMEOUT = 300
"""Seconds per notebook cell in quick mode (full builds use ``execute.timeout`` of ``_config.yml``)."""

STATIC = Path(__file__).resolve().parent.parent / "_static"
"""``book/_static``: the book's own static files (stylesheet, Colab badge)."""

COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
"""The badge image the notebooks link (it works on GitHub and Colab); the book shows its local copy instead."""

MATHJAX_DISTRIBUTION = "sphinx-mathjax-offline"
"""The PyPI package whose files are the book's local MathJax 3 (``<package>/static/mathjax``)."""

MATHJAX_PARTS = ("tex-chtml.js", "input", "output", "a11y", "ui", "sre", "adaptors")
"""What the book copies of MathJax: the TeX-to-HTML component and the folders it loads on demand."""


def quick_banner() -> str:
    """The announcement at the top of every page of a quick-mode build: what ran, and which images were real.

    The sample images are described as this machine has them (:func:`nstlib.data.samples.availability_note`):
    quick mode uses a cached copy where there is one and a synthetic stand-in otherwise.
    """
    return ("<strong>Quick-mode build</strong> (<code>NSTLIB_QUICK=1</code>, built offline): the notebooks ran at "
            f"smoke-test scale (images &le; {nstconfig.MAX_SIZE} px, &le; {nstconfig.MAX_STEPS} steps, random VGG19 "
            f"weights). {html.escape(nstsamples.availability_note())} The pictures are <strong>not</strong> real "
            "results; build without <code>NSTLIB_QUICK</code> for the real course.")

QUICK_MARK = 'id="nstbook-quick-mode"'
"""An attribute of the banner's text that tests look for."""


def library_fingerprint() -> str:
    """SHA-256 over nstlib's Python files and package data (names and bytes, in sorted order).

    Notebook outputs depend on the library as much as on their code, so the execution cache is keyed on it.
    """
    digest = hashlib.sha256()
    package = Path(nstlib.__file__).resolve().parent
    # the manifest: the checkout's data/ folder, or nstlib/data/manifest/ in an installed package
    manifest = package.parent / "data" if (package.parent / "data").is_dir() else package / "data" / "manifest"
    for folder, pattern in ((package, "*.py"), (manifest, "*.tsv")):
        for path in sorted(folder.rglob(pattern)):
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def repository_url(srcdir: str | os.PathLike) -> str:
    """``[project.urls] Repository`` of the ``pyproject.toml`` in the book's source folder (the repository root)."""
    path = Path(srcdir) / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text())["project"]["urls"]["Repository"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read [project.urls] Repository ({error}); the book's source folder "
                          "must be the repository root") from None


def _configure(app, config) -> None:
    """``config-inited``: quick-mode banner and timeout, per-mode cache, repository check."""
    is_quick = nstconfig.quick_mode()
    fingerprint = library_fingerprint()
    config.nstbook_quick = is_quick
    config.nstbook_fingerprint = fingerprint

    wanted = repository_url(app.srcdir)
    configured = config.html_theme_options.get("repository_url", "")
    if configured.rstrip("/") != wanted.rstrip("/"):
        raise ConfigError(f"book/_config.yml: repository.url is {configured!r} but pyproject.toml's [project.urls] "
                          f"Repository is {wanted!r}; make them equal (pyproject.toml is the source of truth)")

    if is_quick:
        config.html_theme_options["announcement"] = f"<span {QUICK_MARK}>{quick_banner()}</span>"
        timeout = config.nb_execution_timeout  # None or <= 0: no limit
        if timeout is None or timeout <= 0 or timeout > QUICK_TIMEOUT:
            config.nb_execution_timeout = QUICK_TIMEOUT

    if not config.nb_execution_cache_path:
        mode = "quick" if is_quick else "full"
        caches = Path(app.outdir).parent / ".jupyter_cache"
        name = f"{mode}-{fingerprint[:12]}"
        if caches.is_dir():
            for old in caches.iterdir():
                if old.is_dir() and old.name != name and re.fullmatch(rf"{mode}-[0-9a-f]{{12}}", old.name):
                    shutil.rmtree(old)
        config.nb_execution_cache_path = str(caches / name)


def local_mathjax() -> Path | None:
    """The folder of the installed ``sphinx-mathjax-offline`` package's MathJax 3 (holding ``tex-chtml.js``), or None."""
    try:
        files = importlib.metadata.files(MATHJAX_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "tex-chtml.js" and file.parent.name == "mathjax":
            folder = Path(str(file.locate())).parent
            return folder if (folder / "tex-chtml.js").is_file() else None
    return None


def _configure_offline(app, config) -> None:
    """``config-inited``: the book's stylesheet, and MathJax from the local copy when it is installed."""
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    app.add_css_file("nstbook.css")
    if local_mathjax() is not None:
        config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static: see _copy_mathjax
    else:
        LOGGER.info(f"[nstbook] {MATHJAX_DISTRIBUTION} is not installed: the maths loads MathJax from "
                    f"{config.mathjax_path} and needs the network (pip install {MATHJAX_DISTRIBUTION}, or make)")


def _copy_mathjax(app, exception) -> None:
    """``build-finished``: copy the local MathJax into ``_static/mathjax`` (only the parts the TeX component loads)."""
    source = local_mathjax()
    if exception is not None or source is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        elif (source / part).is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)


class LocalColabBadge(SphinxTransform):
    """Show the "Open in Colab" badge from ``book/_static`` instead of colab.research.google.com (pages work offline).

    Runs while a page is read, before Sphinx collects its images, so the local SVG is copied like any image.
    """

    default_priority = 200

    def apply(self, **kwargs) -> None:
        badge = "/" + os.path.relpath(STATIC / "colab-badge.svg", self.env.srcdir).replace(os.sep, "/")
        for image in self.document.findall(nodes.image):
            if image.get("uri") == COLAB_BADGE_URL:
                image["uri"] = badge  # "/..." is relative to the source folder (the repository root)
                if "candidates" in image.attributes:
                    del image["candidates"]


def _execute_in_parallel(app, env, docnames) -> None:
    """``env-before-read-docs``: in quick mode, run the uncached notebooks in parallel into the execution cache."""
    config = env.mystnb_config
    if not app.config.nstbook_quick or config.execution_mode != "cache":
        return
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    cache = get_cache(config.execution_cache_path)
    todo = []
    for docname in sorted(docnames):
        path = Path(env.doc2path(docname))
        if path.suffix != ".ipynb":
            continue
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            todo.append(path)
    if len(todo) < 2:
        return  # nothing to gain: myst-nb executes it while reading
    LOGGER.info(f"[nstbook] quick mode: executing {len(todo)} notebooks in parallel into {config.execution_cache_path}")
    records = [cache.add_nb_to_project(str(path)) for path in todo]
    executor = load_executor("local-parallel", cache)
    result = executor.run_and_cache(filter_pks=[record.pk for record in records],
                                    timeout=config.execution_timeout, allow_errors=config.execution_allow_errors)
    failed = result.excepted + result.errored
    if failed:
        LOGGER.info(f"[nstbook] not cached (myst-nb executes them again and reports the error): {failed}")


def _table(csv_path: Path) -> nodes.table:
    """A docutils table of a batch's ``table.csv`` (header row first)."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    table = nodes.table(classes=["grid-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)

    def row(values):
        line = nodes.row()
        for value in values:
            entry = nodes.entry()
            entry += nodes.paragraph(text=value)
            line += entry
        return line

    thead = nodes.thead()
    thead += row(header)
    tbody = nodes.tbody()
    tbody.extend(row(values) for values in body)
    group += thead
    group += tbody
    return table


class GridFigure(SphinxDirective):
    """``grid-figure``: the figure (and table) of a batch grid of ``book/grids``, or how to make it.

    The argument is the grid file, relative to the page. The figure is ``figure.png`` in the grid's output
    folder (:func:`nstlib.course.book.gallery_output`: ``$NSTLIB_RESULTS/batch/<grid name>``). The directive's
    content becomes the caption. Options: ``:table:`` also shows the batch's ``table.csv``.
    """

    required_arguments = 1
    has_content = True
    option_spec = {"table": directives.flag, "alt": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        grid_rel, grid_abs = self.env.relfn2path(self.arguments[0], self.env.docname)
        grid = Path(grid_abs)
        if not grid.is_file():
            raise self.error(f"grid-figure: grid file {grid_rel} does not exist")
        self.env.note_dependency(grid_abs)
        output = gallery_output(grid)
        figure_png, table_csv = output / "figure.png", output / "table.csv"
        # A missing file makes Sphinx re-read this page on every build, so it shows up once it exists.
        self.env.note_dependency(str(figure_png))
        shown = os.path.relpath(output, self.env.srcdir)
        command = f"nstlib batch {grid_rel} --output {output if shown.startswith('..') else shown}"
        result: list[nodes.Node] = []
        if figure_png.is_file():
            docdir = Path(self.env.doc2path(self.env.docname)).parent
            figure = nodes.figure(classes=["grid-figure"])
            figure += nodes.image(uri=os.path.relpath(figure_png, docdir), alt=self.options.get("alt", grid.stem))
            caption = nodes.caption()
            if self.content:
                text_nodes, _ = self.state.inline_text(" ".join(self.content), self.lineno)
                caption.extend(text_nodes)
            caption += nodes.Text(" Made by ")
            caption += nodes.literal(text=command)
            caption += nodes.Text(".")
            figure += caption
            result.append(figure)
            if "table" in self.options and table_csv.is_file():
                self.env.note_dependency(str(table_csv))
                result.append(_table(table_csv))
        else:
            note = nodes.admonition(classes=["note", "grid-figure-missing"])
            note += nodes.title(text=f"Figure not generated yet: {grid.stem}")
            paragraph = nodes.paragraph()
            paragraph += nodes.Text("This batch has not run on the machine that built the book. ")
            paragraph += nodes.literal(text="make course")
            paragraph += nodes.Text(" runs it (then rebuilds the book); or run ")
            paragraph += nodes.literal(text=command)
            paragraph += nodes.Text(" and build again.")
            note += paragraph
            result.append(note)
        return result


def setup(app):
    """Register the configuration values, the ``config-inited`` hook and the ``grid-figure`` directive."""
    # "env": a change re-reads every page, so notebooks take their outputs from the matching cache.
    app.add_config_value("nstbook_quick", False, "env")
    app.add_config_value("nstbook_fingerprint", "", "env")
    app.connect("config-inited", _configure)
    app.connect("config-inited", _configure_offline)
    app.connect("env-before-read-docs", _execute_in_parallel)
    app.connect("build-finished", _copy_mathjax)
    app.add_transform(LocalColabBadge)
    app.add_directive("grid-figure", GridFigure)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
