"""A polite, resumable crawler for the LabelMe images (MIT CSAIL), the seed's training data.

LabelMe has no single archive and publishes no sizes or checksums. Like the official
MATLAB toolbox (``LMinstall.m``), :func:`download_labelme` reads the HTML directory
listing of ``http://labelme.csail.mit.edu/Images/``, then the listing of each folder
``Images/<folder>/``, and fetches the images ``Images/<folder>/<file>.jpg`` into
``dest/<folder>/<file>``:

* folders are visited in sorted order (Python string order) and so are the images of
  each folder; the crawl stops once ``n`` images are on disk, so ``n=20000`` always
  means the same first 20,000 decodable images;
* every link of a listing is resolved against the page's URL and kept only when it
  points one level below that page (same host, no query such as Apache's ``?C=N;O=D``
  sort links, no fragment); its name is percent-decoded and must be a plain file or
  folder name (:func:`safe_name`: no ``/``, ``\\``, ``:``, control characters, no
  leading ``.``), so nothing from the listing can write outside ``dest``;
* at most ``workers`` (1 to 8) connections are open at once, listings included; each
  request goes through :func:`nstlib.data.download.download` (nstlib's User-Agent, retries
  with exponential back-off, atomic files);
* there are no checksums, so each image is verified by decoding it with Pillow; a file
  that does not decode is deleted and recorded as failed, and the next image of the
  listing takes its place;
* every fetched image is recorded in ``dest/manifest.jsonl`` (one JSON object per line:
  ``folder``, ``file``, ``bytes``, ``sha256``), rewritten atomically every
  :data:`SAVE_EVERY` images and when the crawl stops (even on Ctrl-C). An image whose
  file is present with the recorded size *and* that is recorded there is never
  requested again, so a re-run after an interruption fetches only what is missing,
  and a re-run when ``n`` recorded images are present makes no request at all;
* the failures of the last run are listed in ``dest/failed.json`` and reported in a
  warning (count and first few); when fewer than half of ``n`` images could be
  fetched because of failures, :class:`CrawlError` is raised (what was fetched stays).

Quick mode (``NSTLIB_QUICK=1``) never touches the network: :func:`download_labelme`
prints the quick-mode banner and a note, creates nothing and returns ``dest``;
:func:`nstlib.open_dataset` then uses synthetic stand-ins.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import urllib.parse
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from PIL import Image

from .. import config
from .download import DownloadError, download, sha256_file
from ..fileio import atomic_write_json, atomic_write_text
from ..images import DEFAULT_MAX_PIXELS
from ..validate import whole_number

__all__ = [
    "LABELME_URL",
    "CrawlError",
    "default_dir",
    "download_labelme",
    "parse_listing",
    "read_manifest",
    "safe_name",
]

LABELME_URL = "http://labelme.csail.mit.edu/Images/"
"""The LabelMe image root: an HTML directory listing of folders (plain http only)."""

MANIFEST_NAME = "manifest.jsonl"
"""The crawl manifest in ``dest``: one JSON object per fetched image."""

FAILED_NAME = "failed.json"
"""The failures of the last run in ``dest``: a JSON list of ``{folder, file, url, reason}``."""

MAX_WORKERS = 8
"""Most concurrent connections :func:`download_labelme` accepts (be polite to a university server)."""

SAVE_EVERY = 100
"""The manifest is rewritten after this many newly fetched images (and at the end)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg")
"""File names (case-insensitive) in a folder listing that are fetched as images."""

_RESERVED = {MANIFEST_NAME, FAILED_NAME}
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


class CrawlError(RuntimeError):
    """The crawl fetched far fewer images than asked (the message says why and how to resume)."""


def default_dir() -> Path:
    """The default LabelMe folder: ``config.cache_dir() / "datasets" / "labelme"``."""
    return config.cache_dir() / "datasets" / "labelme"


# --------------------------------------------------------------------------------------
# listings


class _LinkParser(HTMLParser):
    """Collects the ``href`` of every ``<a>`` tag."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.links.append(value)


def safe_name(name: str) -> str | None:
    """``name`` when it is safe as one file or folder name inside ``dest``, else None.

    Refused: empty names, ``.``/``..`` and any name starting with ``.`` (hidden files,
    nstlib's temporary files), names holding ``/``, ``\\``, ``:`` or control characters,
    names longer than 200 bytes, Windows device names (``CON``, ``NUL``, ...) and the
    crawler's own file names (``manifest.jsonl``, ``failed.json``).
    """
    if not isinstance(name, str) or not name or name.startswith("."):
        return None
    if any(c in "/\\:" or ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    if len(name.encode("utf-8", "surrogatepass")) > 200 or name in _RESERVED:
        return None
    if name.split(".")[0].strip().lower() in _WINDOWS_RESERVED or name != name.strip() or name.endswith("."):
        return None
    return name


def parse_listing(html: str, page_url: str) -> tuple[list[str], list[str]]:
    """``(folders, images)`` linked from the directory listing ``html`` served at ``page_url``.

    Each ``href`` is resolved with :func:`urllib.parse.urljoin` against ``page_url``
    (taken to end with ``/``). A link is kept only when it has no query and no fragment,
    the same scheme and host as the page, and a path exactly one segment below the
    page's path: ``name/`` is a folder, ``name`` ending in ``.jpg``/``.jpeg``
    (case-insensitive) an image. The segment is percent-decoded and must pass
    :func:`safe_name`. Parent links (``../``, ``/``), sort links (``?C=N;O=D``),
    links to other hosts and names such as ``..%2F..%2Fevil.jpg`` are dropped.
    Both lists are sorted (Python string order) and free of duplicates.
    """
    if not page_url.endswith("/"):
        page_url += "/"
    page = urllib.parse.urlsplit(page_url)
    parser = _LinkParser()
    parser.feed(html)
    parser.close()
    folders: set[str] = set()
    images: set[str] = set()
    for href in parser.links:
        try:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(page_url, href.strip()))
        except ValueError:  # a malformed URL (e.g. a bad IPv6 host): not ours
            continue
        if target.query or target.fragment or (target.scheme, target.netloc) != (page.scheme, page.netloc):
            continue
        if not target.path.startswith(page.path):
            continue
        rest = target.path[len(page.path):]
        is_folder = rest.endswith("/")
        segment = rest[:-1] if is_folder else rest
        if not segment or "/" in segment:
            continue
        name = safe_name(urllib.parse.unquote(segment))
        if name is None:
            continue
        if is_folder:
            folders.add(name)
        elif name.lower().endswith(IMAGE_SUFFIXES):
            images.add(name)
    return sorted(folders), sorted(images)


# --------------------------------------------------------------------------------------
# the manifest


def read_manifest(dest: str | os.PathLike) -> dict[tuple[str, str], dict]:
    """The crawl manifest of ``dest`` as ``{(folder, file): {"folder", "file", "bytes", "sha256"}}``.

    A missing manifest gives ``{}``. Lines that are not such objects, or whose names fail
    :func:`safe_name`, are ignored with one warning (those images are fetched again).
    """
    path = Path(dest) / MANIFEST_NAME
    if not path.is_file():
        return {}
    entries: dict[tuple[str, str], dict] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            folder, file, size, digest = entry["folder"], entry["file"], entry["bytes"], entry["sha256"]
            ok = (safe_name(folder) == folder and safe_name(file) == file and isinstance(size, int)
                  and isinstance(digest, str) and len(digest) == 64)
        except (ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            bad += 1
            continue
        entries[(folder, file)] = {"folder": folder, "file": file, "bytes": size, "sha256": digest}
    if bad:
        warnings.warn(f"{path}: ignored {bad} malformed line(s); those images will be fetched again", stacklevel=2)
    return entries


def _write_manifest(dest: Path, entries: dict[tuple[str, str], dict]) -> None:
    lines = [json.dumps(entries[key], sort_keys=True) + "\n" for key in sorted(entries)]
    atomic_write_text(dest / MANIFEST_NAME, "".join(lines))


def _present(dest: Path, entry: dict) -> bool:
    """True when the recorded file exists with the recorded size (no hashing: that would read every file)."""
    path = dest / entry["folder"] / entry["file"]
    try:
        return path.is_file() and path.stat().st_size == entry["bytes"]
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# the crawl


class _Failed(Exception):
    """One image could not be fetched or decoded (recorded, never fatal)."""


class _Crawl:
    """State of one :func:`download_labelme` run; only the main thread changes it."""

    def __init__(self, dest: Path, base_url: str, workers: int, retries: int, backoff: float, timeout: float,
                 max_pixels: int, tmp: Path):
        self.dest = dest
        self.base_url = base_url
        self.workers = workers
        self.download_kwargs = dict(timeout=timeout, retries=retries, backoff=backoff, progress=False,
                                    allow_http=True)
        self.max_pixels = max_pixels
        self.tmp = tmp
        self.slots = threading.Semaphore(workers)  # listings and images share the connection budget
        self.failures: list[dict] = []
        self.listed = 0

    def url(self, folder: str, file: str | None = None) -> str:
        url = self.base_url + urllib.parse.quote(folder) + "/"
        return url if file is None else url + urllib.parse.quote(file)

    def list_page(self, url: str) -> tuple[list[str], list[str]]:
        page = self.tmp / f"listing-{self.listed}.html"
        self.listed += 1
        with self.slots:
            download(url, page, expect_html=True, **self.download_kwargs)
        try:
            return parse_listing(page.read_bytes().decode("utf-8", errors="replace"), url)
        finally:
            page.unlink(missing_ok=True)

    def candidates(self) -> Iterator[tuple[str, str]]:
        """``(folder, file)`` for every image, folders and files in sorted order, listed lazily."""
        folders, _ = self.list_page(self.base_url)  # failing here is fatal: nothing to crawl
        if not folders:
            raise CrawlError(f"the listing {self.base_url} links to no folders: is it the LabelMe Images/ page? "
                             "Open it in a browser, or pass the right base_url=")
        for folder in folders:
            try:
                _, files = self.list_page(self.url(folder))
            except DownloadError as error:
                self.failures.append({"folder": folder, "file": None, "url": self.url(folder),
                                      "reason": f"listing failed: {error.reason}"})
                continue
            for file in files:
                yield folder, file

    def fetch(self, folder: str, file: str) -> dict:
        """Download one image, check it decodes, return its manifest entry; any failure raises _Failed."""
        try:
            return self._fetch(folder, file)
        except _Failed:
            raise
        except Exception as error:  # a full disk, a folder in the way...: recorded, the crawl goes on
            raise _Failed(f"{type(error).__name__}: {error}") from error

    def _fetch(self, folder: str, file: str) -> dict:
        path = self.dest / folder / file
        root = self.dest.resolve()
        if not path.parent.resolve(strict=False).is_relative_to(root) or path.parent.is_symlink():
            raise _Failed(f"{path} would lie outside {self.dest}")
        try:
            with self.slots:
                download(self.url(folder, file), path, **self.download_kwargs)
        except DownloadError as error:
            raise _Failed(error.reason) from error
        try:
            with Image.open(path) as img:
                width, height = img.size
                if width * height > self.max_pixels:
                    raise ValueError(f"{width}x{height} is more than max_pixels={self.max_pixels}")
                img.load()
        except Exception as error:  # Pillow raises many types for broken files
            path.unlink(missing_ok=True)
            raise _Failed(f"not a decodable image ({type(error).__name__}: {error}); deleted") from error
        return {"folder": folder, "file": file, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def download_labelme(dest: str | os.PathLike | None = None, n: int = 20000, *, base_url: str = LABELME_URL,
                     workers: int = 4, retries: int = 3, backoff: float = 1.0, timeout: float = 30,
                     progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Fetch the first ``n`` decodable LabelMe images into ``dest`` (resumable); return ``dest``.

    Args:
        dest: target folder; default :func:`default_dir` (``<cache>/datasets/labelme``).
            Images land in ``dest/<folder>/<file>``; see the module docstring for
            ``manifest.jsonl`` and ``failed.json``.
        n: how many images to have (the seed trained on 20,000). Folders and files are
            taken in sorted order; an image that fails is replaced by the next one.
        base_url: the ``Images/`` listing (a local server in tests).
        workers: concurrent connections, 1 to 8.
        retries, backoff, timeout: passed to :func:`nstlib.data.download.download` for every
            request (retry ``k`` waits ``backoff * 2**k`` s).
        progress: show a tqdm bar over images.
        max_pixels: larger images (width * height) count as failed.

    Returns ``dest`` at once, without any request, when its manifest already records
    ``n`` images present on disk. In quick mode nothing is downloaded (see the module
    docstring). Raises :class:`CrawlError` when failures leave fewer than ``n / 2``
    images (what was fetched stays recorded: call again to resume), and
    :class:`~nstlib.DownloadError` when the root listing cannot be read.
    """
    n = whole_number(n, "n")
    workers = whole_number(workers, "workers", high=MAX_WORKERS)
    dest = Path(dest).expanduser() if dest is not None else default_dir()
    if not isinstance(base_url, str) or not base_url.lower().startswith(("http://", "https://")):
        raise ValueError(f"base_url={base_url!r} must be an http(s) URL of a directory listing")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    if config.quick_mode():
        config.announce()
        print(f"Quick mode: not downloading LabelMe (quick mode never uses the network); {dest} is left as it is "
              "and open_dataset('labelme') uses synthetic stand-ins when it holds no images.")
        return dest
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"dest={str(dest)!r} is a file: pass a folder for the LabelMe images")

    entries = read_manifest(dest)
    if sum(_present(dest, e) for e in entries.values()) >= n:
        return dest
    dest.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=".listing-", dir=dest) as tmp, \
            config.progress_bar(total=n, unit="img", desc="LabelMe", disable=not progress) as bar:
        crawl = _Crawl(dest, base_url, workers, retries, backoff, timeout, max_pixels, Path(tmp))
        fetched, exhausted = _crawl_into(crawl, entries, n, workers, bar)
    _report(dest, n, fetched, crawl.failures, exhausted, base_url)
    return dest


def _crawl_into(crawl: _Crawl, entries: dict, n: int, workers: int, bar) -> tuple[int, bool]:
    """Fetch candidates with ``workers`` threads until ``n`` images are present or the listing ends.

    ``entries`` (the manifest, updated in place) is saved every :data:`SAVE_EVERY` images and at
    the end, with ``failed.json``, whatever happens. Returns ``(images present, listing exhausted)``.
    """
    dest = crawl.dest
    fetched = 0  # images present after this run among the candidates (recorded earlier or fetched now)
    exhausted = False
    unsaved = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelme")
    pending: dict[Future, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    candidates = crawl.candidates()

    def collect(future: Future) -> None:
        nonlocal fetched, unsaved
        folder, file = pending.pop(future)
        try:
            entry = future.result()
        except _Failed as error:
            crawl.failures.append({"folder": folder, "file": file, "url": crawl.url(folder, file),
                                   "reason": str(error)})
            bar.set_postfix(failed=len(crawl.failures))
            return
        entries[(folder, file)] = entry
        fetched += 1
        unsaved += 1
        bar.update(1)

    try:
        while True:
            # keep up to 2 * workers requests queued, never more than needed to reach n
            while not exhausted and fetched + len(pending) < n and len(pending) < 2 * workers:
                try:
                    key = next(candidates)
                except StopIteration:
                    exhausted = True
                    break
                if key in seen:
                    continue
                seen.add(key)
                if key in entries and _present(dest, entries[key]):
                    fetched += 1
                    bar.update(1)
                    continue
                pending[pool.submit(crawl.fetch, *key)] = key
            if not pending:
                break
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                collect(future)
            if unsaved >= SAVE_EVERY:
                _write_manifest(dest, entries)
                unsaved = 0
    finally:
        for future in list(pending):
            if not future.cancel():
                try:
                    future.exception()  # wait for a running download, then keep its result
                except BaseException:
                    continue
                collect(future)
        pool.shutdown(wait=True)
        _write_manifest(dest, entries)
        atomic_write_json(dest / FAILED_NAME, crawl.failures)
    return fetched, exhausted


def _report(dest: Path, n: int, fetched: int, failures: list[dict], exhausted: bool, base_url: str) -> None:
    """Warn about failures and shortfalls; raise CrawlError when failures left fewer than n / 2 images."""
    first = "; ".join(f"{f['folder']}/{f['file'] or ''}: {f['reason']}" for f in failures[:3])
    failed = (f"{len(failures)} image(s) or listing(s) failed (first: {first}); all are listed in "
              f"{dest / FAILED_NAME}. Call download_labelme again to retry them") if failures else ""
    if failures and fetched < n / 2:
        raise CrawlError(f"only {fetched} of n={n} LabelMe images could be fetched from {base_url}: {failed}. "
                         f"What was fetched is kept and recorded in {dest / MANIFEST_NAME}; check the network "
                         "and call download_labelme again to resume")
    if fetched < n:
        why = f"the listing holds only {fetched} usable image(s)" if exhausted else "the crawl stopped early"
        warnings.warn(f"LabelMe: {fetched} of n={n} images in {dest} ({why}). {failed}", stacklevel=3)
    elif failures:
        warnings.warn(f"LabelMe: all {n} images are in {dest}, but {failed}", stacklevel=3)
