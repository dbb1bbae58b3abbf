"""The HTML course book: built once, in quick mode, into a temporary folder, then checked page by page.

The build is the README's command with the gallery batches skipped (``python -m nstlib.course build
--skip-gallery``): it executes every notebook (in parallel in quick mode) and renders the book with
warnings as errors. Running the gallery batches would take minutes more; instead one gallery figure is a
tiny pre-made PNG and the others are missing, so both states of the gallery page are checked. HTTP(S)
goes to a dead proxy during the build, so anything that tries to download fails it: quick mode is offline.

Also checked without a build: the repository URL has one source (pyproject.toml) that the book's config,
the README and the notebooks agree with, the book extension's quick-mode and cache settings, the
gallery runner, and stripping a notebook's unchecked outputs.

The tests that read the built book are marked ``slow`` (the build executes every notebook again, after
nbval already has): ``pytest -m "not slow"`` leaves them out of the quick loop; CI runs them.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import os
import re
import subprocess
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dev dependency there)
    import tomli as tomllib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml
from PIL import Image

from nstlib import cli
from nstlib import config as config_module
from nstlib.course import batch
from nstlib.course import book as course
from nstlib.data import samples
from notebook_files import write_notebook

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
SLUG = REPOSITORY.removeprefix("https://github.com/")
CONFIG = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
NOTEBOOKS = course.notebook_paths(ROOT / "notebooks")
BRANCH = CONFIG["repository"]["branch"]
MADE_GRID = "style_weight_sweep"  # the gallery grid whose figure the test provides


def _load_extension():
    spec = importlib.util.spec_from_file_location("nstbook_under_test", ROOT / "book" / "_ext" / "nstbook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nstbook = _load_extension()


class Page(HTMLParser):
    """The links, image sources, element ids and announcement text of one HTML file."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path = path
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.chunks: list[str] = []
        self.text = path.read_text(encoding="utf8")
        self.feed(self.text)
        self.plain = " ".join(" ".join(self.chunks).split())
        """The visible text, whitespace collapsed (markup such as <code><span>python</span> ... dropped)."""

    def handle_data(self, data):
        self.chunks.append(data)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("id", "name"):
            if attributes.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attributes[key])
        if tag in ("a", "link") and attributes.get("href") is not None:
            self.links.append(attributes["href"])
        if tag in ("img", "script") and attributes.get("src") is not None:
            self.links.append(attributes["src"])
            if tag == "img":
                self.images.append(attributes["src"])


@dataclass
class Book:
    out: Path
    html: Path
    log: str
    results: Path

    def page(self, relative: str) -> Page:
        return Page(self.html / relative)


def _tiny_png(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 8), (200, 30, 60)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Book:
    out = tmp_path_factory.mktemp("book")
    results = out / "results"
    _tiny_png(results / "batch" / MADE_GRID / "figure.png")
    (results / "batch" / MADE_GRID / "table.csv").write_text("STYLE,STYLE_WEIGHT,status,seconds\nmosaic,1e+06,ok,1.2345\n")
    dead_proxy = "http://127.0.0.1:9"
    env = {key: value for key, value in os.environ.items() if key not in ("NSTLIB_MIRROR", "NO_PROXY", "no_proxy")}
    env.update(NSTLIB_QUICK="1", NSTLIB_RESULTS=str(results), NSTLIB_CACHE=str(out / "cache"),
               http_proxy=dead_proxy, https_proxy=dead_proxy, HTTP_PROXY=dead_proxy, HTTPS_PROXY=dead_proxy)
    argv = [sys.executable, "-m", "nstlib.course", "build", "--skip-gallery", "--path-output", str(out)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"book build failed:\n{log[-8000:]}"
    return Book(out, out / "_build" / "html", log, results)


def _words(text: str) -> str:
    """Only the words of ``text`` (HTML entities decoded; quotes and punctuation, smart or not, dropped)."""
    return " ".join(re.findall(r"[^\W_]+", html.unescape(text)))


def _pages(book: Book) -> list[Path]:
    return sorted(p for p in book.html.rglob("*.html") if "_static" not in p.relative_to(book.html).parts)


@pytest.mark.slow
def test_build_reports_the_book_and_index_redirects_to_the_introduction(book):
    index = book.html / "index.html"
    assert f"The book is ready: {index}" in book.log
    assert "quick mode" in book.log.lower()
    assert 'url=book/intro.html"' in index.read_text()
    assert (book.html / "book" / "intro.html").exists()


@pytest.mark.slow
def test_every_notebook_has_a_page_with_its_figures(book):
    from jupyter_cache import get_cache

    caches = list((book.out / "_build" / ".jupyter_cache").glob("quick-*"))
    assert len(caches) == 1, caches
    cache = get_cache(caches[0])
    for path in NOTEBOOKS:
        page = book.page(f"notebooks/{path.stem}.html")
        _, executed = cache.merge_match_into_notebook(nbformat.read(path, as_version=4))
        figures = sum(1 for cell in executed.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
                      if any(kind.startswith("image/") for kind in output.get("data", {})))
        shown = [src for src in page.images if "_images/" in src]
        assert figures >= 1, f"{path.name}: the executed notebook shows no figure"
        assert len(shown) >= figures, f"{path.name}: {figures} image outputs but {len(shown)} images on the page"
        title = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].split("·")[-1]
        assert _words(title) in _words(page.text), f"{path.name}: the page lacks the notebook's title"


@pytest.mark.slow
def test_launch_buttons_open_the_notebook_of_the_repository(book):
    for path in NOTEBOOKS:
        page = book.page(f"notebooks/{path.stem}.html")
        repo_path = f"notebooks/{path.name}"
        colab = f"https://colab.research.google.com/github/{SLUG}/blob/{BRANCH}/{repo_path}"
        binder = f"https://mybinder.org/v2/gh/{SLUG}/{BRANCH}?urlpath=lab/tree/{repo_path}"
        assert colab in page.links, f"{path.name}: no Colab button to {colab}"
        assert binder in page.links, f"{path.name}: no Binder button to {binder}"
        assert (ROOT / repo_path).is_file()  # the path the buttons open exists in the repository


@pytest.mark.slow
def test_quick_mode_banner_on_every_page(book):
    pages = _pages(book)
    assert len(pages) >= len(NOTEBOOKS) + 5
    for page in pages:
        text = page.read_text(encoding="utf8")
        if page == book.html / "index.html":
            assert "http-equiv=\"Refresh\"" in text  # a redirect, not a page
            continue
        assert nstbook.QUICK_MARK in text and "Quick-mode build" in text, f"{page}: no quick-mode banner"


def _parsed(cache: dict[Path, Page], path: Path) -> Page:
    if path not in cache:
        cache[path] = Page(path)
    return cache[path]


@pytest.mark.slow
def test_no_broken_internal_links(book):
    checked = 0
    cache: dict[Path, Page] = {}
    for path in _pages(book):
        page = _parsed(cache, path)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            assert target.exists(), f"{path.relative_to(book.html)}: broken link {link!r}"
            if parts.fragment and target.suffix == ".html":
                ids = _parsed(cache, target).ids
                assert unquote(parts.fragment) in ids, f"{path.relative_to(book.html)}: no #{parts.fragment} in {link!r}"
            checked += 1
    assert checked > 100


@pytest.mark.slow
def test_solutions_are_collapsed_toggles(book):
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        solutions = [c for c in nb.cells if "hide-cell" in c.metadata.get("tags", [])]
        assert solutions, f"{path.name}: no solution cells"
        text = book.page(f"notebooks/{path.stem}.html").text
        assert text.count('class="cell tag_hide-cell') == len(solutions)
        toggles = re.findall(r'class="cell tag_hide-cell[^"]*">\s*<details([^>]*)>', text)
        assert len(toggles) == len(solutions), f"{path.name}: a solution cell is not a <details> toggle"
        assert all("open" not in attributes for attributes in toggles), f"{path.name}: a solution starts open"
        marks = [m.start() for m in re.finditer(r"#@title Solution", text)]
        assert len(marks) == len(solutions)
        for mark in marks:
            assert text.rfind("<details", 0, mark) > text.rfind("</details>", 0, mark), f"{path.name}: solution outside its toggle"


@pytest.mark.slow
def test_gallery_shows_made_figures_and_explains_missing_ones(book):
    page = book.page("book/gallery.html")
    made = (book.results / "batch" / MADE_GRID / "figure.png").read_bytes()
    figures = [src for src in page.images if "_images/" in src]
    assert len(figures) == 1 and (book.html / "book" / figures[0]).resolve().read_bytes() == made
    assert "1.2345" in page.plain  # the batch's table
    for grid in course.gallery_grids():
        if grid.stem != MADE_GRID:
            assert f"Figure not generated yet: {grid.stem}" in page.plain
            assert f"nstlib batch book/grids/{grid.name}" in page.plain


class ProseLines(HTMLParser):
    """The text of a page outside code, scripts and styles, line by line (where raw Markdown would show)."""

    SKIP = {"pre", "code", "script", "style", "textarea"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.chunks: list[str] = []
        self.feed(text)
        self.lines = [line.strip() for line in "".join(self.chunks).splitlines() if line.strip()]

    def handle_starttag(self, tag, attrs):
        self.depth += tag in self.SKIP
        if tag in ("p", "div", "br", "tr", "li", "td", "th"):
            self.chunks.append("\n")

    def handle_endtag(self, tag):
        self.depth -= tag in self.SKIP and self.depth > 0

    def handle_data(self, data):
        if not self.depth:
            self.chunks.append(data)


RAW_TABLE_ROW = re.compile(r"^\|.*\|$|\|\s*:?-{3,}:?\s*\|")
"""A Markdown table row (``| a | b |``) or separator (``|---|``) that was not rendered as a table."""


def test_raw_table_detector():
    html_page = ("<p>| a | b |</p><pre>| code | stays |</pre><table><tr><td>x</td></tr></table>"
                 "<div class='output'><p>|---|---:|</p></div><p>a | b, in prose</p>")
    lines = ProseLines(html_page).lines
    assert [line for line in lines if RAW_TABLE_ROW.search(line)] == ["| a | b |", "|---|---:|"]


@pytest.mark.slow
def test_no_page_shows_raw_markdown_tables_and_notebook_tables_are_html(book):
    for path in _pages(book):
        raw = [line for line in ProseLines(path.read_text(encoding="utf8")).lines if RAW_TABLE_ROW.search(line)]
        assert not raw, f"{path.relative_to(book.html)} shows Markdown table syntax as text: {raw[:3]}"
    timing = book.page("notebooks/05_fast_stylization.html")
    assert timing.text.count('<table class="nstlib-table">') >= 2  # the timing table and Gatys versus fast
    for header in ("long side (px)", "ms per image", "content loss", "style loss"):
        assert header in timing.plain, header


@pytest.mark.slow
def test_pages_render_offline(book):
    """Every script, stylesheet and image a page loads is in the build (maths, badge): nothing from the network."""
    for path in _pages(book):
        page = Page(path)
        loaded = re.findall(r'<(?:script|img)[^>]*\ssrc="([^"]+)"', page.text)
        loaded += re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', page.text)
        remote = [url for url in loaded if re.match(r"(https?:)?//", url)]
        assert not remote, f"{path.relative_to(book.html)} loads {remote}"
        for url in loaded:
            if not url.startswith("data:"):
                target = (path.parent / url.split("?")[0].split("#")[0]).resolve()
                assert target.is_file(), f"{path.relative_to(book.html)}: {url} is missing from the build"
    intro = book.page("notebooks/02_gram_matrices.html")
    mathjax = [url for url in re.findall(r'<script[^>]*src="([^"]+)"', intro.text) if "mathjax" in url.lower()]
    assert mathjax and all(url.split("?")[0].endswith("_static/mathjax/tex-chtml.js") for url in mathjax)
    for path in NOTEBOOKS:
        badges = [src for src in book.page(f"notebooks/{path.stem}.html").images if "colab-badge" in src]
        assert badges and all(src.startswith("../_images/colab-badge") for src in badges), path.name


@pytest.mark.slow
def test_live_previews_leave_one_picture_per_cell(book):
    for path in NOTEBOOKS:
        cells = [c for c in nbformat.read(path, as_version=4).cells
                 if c.cell_type == "code" and re.search(r"LivePreview\(|LiveTrainingPlot\(", c.source)]
        pictures = book.page(f"notebooks/{path.stem}.html").text.count("image-rendering: pixelated")
        assert pictures <= len(cells), f"{path.name}: {pictures} preview pictures for {len(cells)} preview cells"


@pytest.mark.slow
def test_reference_pages(book):
    glossary = book.page("book/glossary.html")
    for term in ("content loss", "style loss", "Gram matrix", "feature map", "receptive field", "L-BFGS",
                 "total variation", "instance normalisation", "perceptual loss", "transform network",
                 "IOB and MOB", "quick mode"):
        assert f"term-{term.replace(' ', '-')}" in glossary.ids, f"glossary: no term {term!r}"
    bibliography = book.page("book/bibliography.html").text
    for title in ("Perceptual losses for real-time style transfer", "Neural style transfer: a review",
                  "Neural style transfer via meta networks", "Texture networks", "Image style transfer using"):
        assert title in bibliography, f"bibliography: no {title!r}"
    table = book.page("book/execution_times.html").text
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in table, f"execution times: no row for {path.name}"
    assert table.count("✅") == len(NOTEBOOKS)
    intro = book.page("book/intro.html").plain
    assert "shading, brightness and contrast" in intro


# ---------------------------------------------------------------------------------------------------------------
# Without a build


def test_one_repository_url_everywhere():
    assert CONFIG["repository"]["url"] == REPOSITORY, "book/_config.yml repository.url must equal pyproject.toml's"
    assert nstbook.repository_url(ROOT) == REPOSITORY
    patterns = [r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)", r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)",
                r"git\+https://github\.com/([\w.-]+/[\w.-]+)"]
    files = [ROOT / "README.md", *NOTEBOOKS, *sorted((ROOT / "book").glob("*.md"))]
    found = 0
    for path in files:
        text = path.read_text()
        for pattern in patterns:
            for slug in re.findall(pattern, text):
                found += 1
                assert slug.removesuffix(".git") == SLUG, f"{path.name}: {slug} is not the repository {SLUG}"
    assert found >= 2 * len(NOTEBOOKS)  # each notebook: its badge and its setup cell


def _fake_sphinx(tmp_path, url=REPOSITORY):
    app = SimpleNamespace(srcdir=str(ROOT), outdir=str(tmp_path / "_build" / "html"))
    config = SimpleNamespace(html_theme_options={"repository_url": url}, nb_execution_timeout=3600,
                             nb_execution_cache_path="", nstbook_quick=None, nstbook_fingerprint=None)
    return app, config


def test_extension_quick_mode_banner_timeout_and_cache(tmp_path, monkeypatch):
    caches = tmp_path / "_build" / ".jupyter_cache"
    stale, other_mode, unrelated = caches / "quick-0123456789ab", caches / "full-0123456789ab", caches / "notes"
    for folder in (stale, other_mode, unrelated):
        folder.mkdir(parents=True)
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    app, config = _fake_sphinx(tmp_path)
    nstbook._configure(app, config)
    fingerprint = nstbook.library_fingerprint()
    assert config.nstbook_quick is True and config.nstbook_fingerprint == fingerprint
    assert nstbook.QUICK_MARK in config.html_theme_options["announcement"]
    assert config.nb_execution_timeout == nstbook.QUICK_TIMEOUT
    assert config.nb_execution_cache_path == str(caches / f"quick-{fingerprint[:12]}")
    assert not stale.exists() and other_mode.exists() and unrelated.exists()

    monkeypatch.setenv("NSTLIB_QUICK", "0")
    app, config = _fake_sphinx(tmp_path)
    nstbook._configure(app, config)
    assert "announcement" not in config.html_theme_options and config.nb_execution_timeout == 3600
    assert config.nb_execution_cache_path == str(caches / f"full-{fingerprint[:12]}")
    assert not other_mode.exists()


def test_quick_banner_says_which_images_were_real(monkeypatch):
    """The banner describes this machine's sample images (not "synthetic stand-ins" whatever the cache holds)."""
    monkeypatch.setattr(samples, "availability_note", lambda: "Sample images: all 13 are the real images, from the cache.")
    banner = nstbook.quick_banner()
    assert "all 13 are the real images, from the cache." in banner and "stand-in" not in banner
    assert f"&le; {config_module.MAX_SIZE} px" in banner and "random VGG19 weights" in banner
    monkeypatch.setattr(samples, "availability_note", lambda: "Sample images: none of the 13 is cached, so <all>.")
    assert "none of the 13 is cached, so &lt;all&gt;." in nstbook.quick_banner()  # escaped


def test_extension_serves_mathjax_and_styles_locally(tmp_path, monkeypatch):
    mathjax = nstbook.local_mathjax()
    assert mathjax is not None and (mathjax / "tex-chtml.js").is_file(), (
        f"{nstbook.MATHJAX_DISTRIBUTION} is a dev dependency: the book's maths must not need the network")
    added = []
    app = SimpleNamespace(add_css_file=added.append)
    config = SimpleNamespace(html_static_path=["_static"], mathjax_path="https://cdn.example/mathjax.js")
    nstbook._configure_offline(app, config)
    assert config.mathjax_path == "mathjax/tex-chtml.js" and added == ["nstbook.css"]
    assert config.html_static_path == ["_static", str(ROOT / "book" / "_static")]
    assert (ROOT / "book" / "_static" / "nstbook.css").is_file() and (ROOT / "book" / "_static" / "colab-badge.svg").is_file()
    # build-finished: the TeX component and what it loads on demand (fonts, extensions) land in _static/mathjax
    out = tmp_path / "html"
    nstbook._copy_mathjax(SimpleNamespace(outdir=str(out), builder=SimpleNamespace(format="html")), None)
    copied = out / "_static" / "mathjax"
    assert (copied / "tex-chtml.js").read_bytes() == (mathjax / "tex-chtml.js").read_bytes()
    assert list((copied / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-Regular.woff"))
    assert (copied / "input" / "tex" / "extensions").is_dir()
    # without the package the build still works, with the CDN, and says so
    monkeypatch.setattr(nstbook, "local_mathjax", lambda: None)
    config = SimpleNamespace(html_static_path=[], mathjax_path="https://cdn.example/mathjax.js")
    nstbook._configure_offline(SimpleNamespace(add_css_file=lambda name: None), config)
    assert config.mathjax_path == "https://cdn.example/mathjax.js"


def test_colab_badge_is_shown_from_the_local_copy():
    from docutils.utils import new_document
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser

    document = new_document("page", get_default_settings(Parser))
    remote = nstbook.nodes.image(uri=nstbook.COLAB_BADGE_URL, alt="Open In Colab")
    other = nstbook.nodes.image(uri="https://example.org/figure.png")
    document += [remote, other]
    document.settings.env = SimpleNamespace(srcdir=str(ROOT))  # SphinxTransform.env reads the build environment here
    nstbook.LocalColabBadge(document).apply()
    assert remote["uri"] == "/book/_static/colab-badge.svg" and other["uri"] == "https://example.org/figure.png"
    svg = (ROOT / "book" / "_static" / "colab-badge.svg").read_text()
    assert svg.startswith("<svg") and "Open in Colab" in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_extension_refuses_a_different_repository_url(tmp_path):
    from sphinx.errors import ConfigError

    app, config = _fake_sphinx(tmp_path, url="https://github.com/someone/else")
    with pytest.raises(ConfigError, match="pyproject.toml"):
        nstbook._configure(app, config)


def test_library_fingerprint_follows_the_library(tmp_path, monkeypatch):
    package, data = tmp_path / "nstlib", tmp_path / "data"
    package.mkdir()
    data.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    (data / "images.tsv").write_text("name\turl\n")
    monkeypatch.setattr(nstbook.nstlib, "__file__", str(package / "__init__.py"))
    first = nstbook.library_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", first) and nstbook.library_fingerprint() == first
    (data / "images.tsv").write_text("name\turl\nwave\thttps://example.org/wave.jpg\n")
    second = nstbook.library_fingerprint()
    (package / "__init__.py").write_text("x = 2\n")
    assert len({first, second, nstbook.library_fingerprint()}) == 3


def test_book_command_and_gallery_output(monkeypatch, tmp_path):
    argv = course.book_command(tmp_path)
    assert argv[1:3] == ["build", str(ROOT)]  # the repository root is the source folder
    assert argv[argv.index("--config") + 1] == str(ROOT / "book" / "_config.yml")
    assert argv[argv.index("--toc") + 1] == str(ROOT / "book" / "_toc.yml")
    assert argv[argv.index("--path-output") + 1] == str(tmp_path)
    assert "--warningiserror" in argv and "--keep-going" in argv
    monkeypatch.setenv("NSTLIB_RESULTS", str(tmp_path / "r"))
    assert course.gallery_output(ROOT / "book" / "grids" / "layer_choice.yaml") == tmp_path / "r" / "batch" / "layer_choice"
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [c for c in chapters if c.startswith("notebooks/")] == [f"notebooks/{p.stem}" for p in NOTEBOOKS]


def test_gallery_grids_are_valid_and_cover_the_figures_the_book_uses(monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    grids = {path.stem: batch.load_grid(path) for path in course.gallery_grids()}
    assert set(grids) == {"style_weight_sweep", "layer_choice", "basic_vs_fast", "runtime_vs_size", "adain_alpha"}
    assert grids["runtime_vs_size"].figure["kind"] == "plot" and grids["runtime_vs_size"].figure["x"] == "SIZE"
    assert {Path(str(v)).stem for v in grids["basic_vs_fast"].axes["notebook"]} == {"03_gatys_style_transfer", "05_fast_stylization"}
    gallery = (ROOT / "book" / "gallery.md").read_text()
    for name in grids:
        assert f"grid-figure}} grids/{name}.yaml" in gallery


PROBE_CELLS = [
    ("A = 1\nRESULTS_DIR = None", ["parameters"]),
    ("import json, pathlib\nif A == 3:\n    raise RuntimeError('deliberate failure')\n"
     "pathlib.Path(RESULTS_DIR).mkdir(parents=True, exist_ok=True)\n"
     "(pathlib.Path(RESULTS_DIR) / 'metrics.json').write_text(json.dumps({'seconds': A * 2.0}))", []),
]


def test_run_gallery_reports_failed_runs_and_draws_the_plot(tmp_path, monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    monkeypatch.setenv("NSTLIB_RESULTS", str(tmp_path / "results"))
    write_notebook(tmp_path / "probe.ipynb", PROBE_CELLS)
    grid_file = tmp_path / "probe_grid.yaml"
    grid_file.write_text(yaml.safe_dump({"notebook": "probe.ipynb", "grid": {"A": [1, 3]},
                                         "figure": {"kind": "plot", "x": "A", "y": "seconds"}}))
    failed = course.run_gallery([grid_file], workers=2)
    assert failed == ["probe_grid/A=3"]
    output = tmp_path / "results" / "batch" / "probe_grid"
    assert (output / "figure.png").stat().st_size > 0 and (output / "A=1" / "metrics.json").exists()
    assert batch.plot_data(batch.load_grid(grid_file, output)) == {"seconds": [(1.0, 2.0)]}


PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "no_proxy")


@pytest.fixture
def full_mode(tmp_path, monkeypatch):
    """Full mode (not quick), a fresh cache and torch hub folder, no mirror, no proxy; returns the cache."""
    for name in ("NSTLIB_QUICK", "NSTLIB_MIRROR", *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "cache"


def _refused_port() -> int:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_full_build_stops_with_one_message_before_the_gallery(full_mode, monkeypatch, capsys):
    """Without a network (every request goes to a refused local proxy) and nothing cached, the build
    stops before any batch with one line naming the three ways out and where the files go."""
    dead_proxy = f"http://127.0.0.1:{_refused_port()}"
    for name in PROXY_VARIABLES[:4]:
        monkeypatch.setenv(name, dead_proxy)
    ran = []
    monkeypatch.setattr(course, "run_gallery", lambda *args, **kwargs: ran.append("gallery") or [])
    monkeypatch.setattr(course, "build_book", lambda *args, **kwargs: ran.append("book"))
    assert cli.main(["book", "build"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstlib: error: "), captured.err
    message = lines[0]
    assert ran == [] and "Traceback" not in captured.err
    images = full_mode / "images"
    for words in ("download.pytorch.org", "www.dropbox.com", "Connection refused",
                  "connect to the internet", "HTTPS_PROXY", "NSTLIB_QUICK=1 make course", "NSTLIB_MIRROR",
                  str(course.vgg19_file()), str(full_mode / "pretrained" / "saved_models.zip"), str(images),
                  f"{len(samples.SAMPLES)} sample images", "nstlib info"):
        assert words in message, words
    assert "(1)" in message and "(2)" in message and "(3)" in message


def test_no_probe_in_quick_mode_or_when_everything_is_cached(full_mode, monkeypatch, no_network, tmp_path):
    body = b"a sample image, as far as its checksum goes"
    sample = samples.Sample(name="probe_style", kind="style", file="style/probe.jpg", title="T", artist="A",
                            year=None, rights="test", url="https://example.invalid/probe.jpg",
                            sha256=hashlib.sha256(body).hexdigest(), bytes=len(body), width=4, height=4)
    monkeypatch.setattr(samples, "SAMPLES", {sample.name: sample})
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    course.check_downloads()  # quick mode never downloads: nothing to check (no_network would fail it)
    monkeypatch.delenv("NSTLIB_QUICK")
    assert [what for what, _, _ in course.missing_downloads()] == [
        "the VGG19 weights", "1 sample images", "the pretrained models' archive"]
    vgg = course.vgg19_file()
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(b"weights")
    (full_mode / "pretrained").mkdir(parents=True)
    (full_mode / "pretrained" / "saved_models.zip").write_bytes(b"placed by hand")
    mirror = tmp_path / "mirror" / "style"
    mirror.mkdir(parents=True)
    (mirror / "probe.jpg").write_bytes(body)
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror.parent))  # a mirror folder that holds the image
    assert course.missing_downloads() == []
    course.check_downloads()
    monkeypatch.delenv("NSTLIB_MIRROR")
    cached = full_mode / "images" / "style" / "probe.jpg"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(body[:-1] + b"?")  # a cached file with the wrong checksum is fetched again: missing
    assert [what for what, _, _ in course.missing_downloads()] == ["1 sample images"]
    cached.write_bytes(body)
    assert course.missing_downloads() == []
    course.check_downloads()


def test_reachable_downloads_let_the_build_go_on(full_mode, monkeypatch, http_server):
    """What is missing comes from a mirror URL that answers (here with 404 to HEAD: the server is there)."""
    monkeypatch.setenv("NSTLIB_MIRROR", http_server.base_url + "/mirror/")
    monkeypatch.setattr(course, "vgg19_file", lambda: full_mode / "vgg.pth")
    (full_mode).mkdir(parents=True, exist_ok=True)
    (full_mode / "vgg.pth").write_bytes(b"weights")
    (full_mode / "pretrained" / "saved_models").mkdir(parents=True)
    for style in ("candy", "mosaic", "rain_princess", "udnie"):
        (full_mode / "pretrained" / "saved_models" / f"{style}.pth").write_bytes(b"model")
    missing = course.missing_downloads()
    assert len(missing) == 1 and missing[0][1].startswith(http_server.base_url + "/mirror/")
    course.check_downloads()
    assert [r.method for r in http_server.requests] == ["HEAD"]  # one probe for the one host


def test_build_command_line_rejects_bad_arguments(capsys):
    assert cli.main(["book", "build", "--workers", "0"]) == 2
    assert "--workers: 0 must be" in capsys.readouterr().err


def test_strip_outputs_keeps_only_checked_cells():
    nb = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", execution_count=3)
    checked.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    other = nbformat.v4.new_code_cell("print(2)", execution_count=4)
    other.outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), checked, other]
    course.strip_outputs(nb)
    assert checked.outputs and not other.outputs and other.execution_count is None
    assert course.is_checked(checked) and not course.is_checked(other) and not course.is_checked(nb.cells[0])
