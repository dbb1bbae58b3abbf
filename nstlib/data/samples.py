"""The sample images of the course: a checked manifest, fetched on demand.

The manifest ``images.tsv`` (the top-level ``data/`` folder, installed as the
package ``nstlib.data.manifest``) lists each painting or photo with its title, artist,
rights, pinned URL, SHA-256, size in bytes and pixel size. The images themselves
are never part of the project: :func:`fetch_sample` gets them, in this order,

1. from the cache, ``<cache>/images/<file>``, when its SHA-256 matches (a
   mismatching cached file is deleted and fetched again);
2. from the mirror ``NSTLIB_MIRROR`` when it is set: a local folder
   (``<mirror>/<file>``, checked and copied atomically into the cache; a folder
   without that file is skipped quietly and the next step runs) or a base URL
   (``<base>/<file>``, downloaded and checked);
3. in quick mode (``NSTLIB_QUICK=1``) only: a deterministic synthetic stand-in
   (:mod:`nstlib.data.synthetic`) written as ``<cache>/standins/<name>.png``, after the
   quick-mode banner; quick mode never touches the network;
4. from the pinned URL, checked against the manifest's SHA-256 and size. When that fails, the
   :class:`~nstlib.data.download.DownloadError` names every way out, as the VGG19 weights' and
   the pretrained models' errors do: the network or proxy, the file placed by hand in the cache,
   ``NSTLIB_MIRROR``, and quick mode (:func:`offline_hints`).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from .. import config
from ..fileio import atomic_write
from . import synthetic
from .download import DownloadError, download, sha256_file

__all__ = [
    "KINDS",
    "MANIFEST_COLUMNS",
    "ManifestError",
    "SAMPLES",
    "Sample",
    "fetch_sample",
    "get_sample",
    "is_sample",
    "load_manifest",
    "manifest_path",
    "offline_hints",
    "sample_names",
]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("name", "kind", "file", "title", "artist", "year", "rights", "url", "sha256", "bytes",
                    "width", "height")
"""The manifest's columns, in order (the first line of ``images.tsv``)."""

KINDS = ("style", "content")
"""The kinds of sample: a style image (painting) or a content image (photo)."""

_NAME_RE = re.compile(r"[a-z0-9_]+")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """The sample manifest is malformed; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Sample:
    """One manifest row: an image, where it comes from and how to check it.

    ``file`` is the relative path used in the cache and in mirrors
    (``style/wave.jpg``); ``bytes`` and ``sha256`` describe that file exactly;
    ``width`` and ``height`` are its pixel size; ``year`` is None when unknown.
    """

    name: str
    kind: str
    file: str
    title: str
    artist: str
    year: str | None
    rights: str
    url: str
    sha256: str
    bytes: int
    width: int
    height: int

    @property
    def credit(self) -> str:
        """``"Title, Artist (Year) — rights"``; the ``(Year)`` is left out when unknown."""
        year = f" ({self.year})" if self.year else ""
        return f"{self.title}, {self.artist}{year} — {self.rights}"


def manifest_path():
    """The shipped manifest (a Traversable): ``nstlib.data.manifest/images.tsv``.

    From a source checkout that is on ``sys.path`` but not installed, ``nstlib.data.manifest``
    does not exist; then ``data/images.tsv`` next to the ``nstlib`` folder is used.
    """
    try:
        return importlib.resources.files("nstlib.data.manifest") / "images.tsv"
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "data" / "images.tsv"


def _row_error(source: str, line: int, name: str | None, problem: str) -> ManifestError:
    who = f"row {line}" + (f" ({name!r})" if name else "")
    return ManifestError(f"{source}, {who}: {problem}. Fix that row of the manifest (tab-separated, "
                         f"columns: {' '.join(MANIFEST_COLUMNS)}).")


def _parse_row(source: str, line: int, fields: list[str]) -> Sample:
    if len(fields) != len(MANIFEST_COLUMNS):
        raise _row_error(source, line, fields[0] if fields else None,
                         f"has {len(fields)} fields, expected {len(MANIFEST_COLUMNS)}")
    row = dict(zip(MANIFEST_COLUMNS, (f.strip() for f in fields)))
    name = row["name"]

    def bad(problem: str) -> ManifestError:
        return _row_error(source, line, name, problem)

    if not _NAME_RE.fullmatch(name):
        raise bad(f"name {name!r} must be lower-case letters, digits and underscores")
    if row["kind"] not in KINDS:
        raise bad(f"kind {row['kind']!r} must be one of {', '.join(KINDS)}")
    file = PurePosixPath(row["file"])
    if (not row["file"] or file.is_absolute() or "\\" in row["file"] or ".." in file.parts
            or str(file) != row["file"]):
        raise bad(f"file {row['file']!r} must be a plain relative path like style/wave.jpg")
    if not row["url"].startswith("https://") or len(row["url"]) <= len("https://"):
        raise bad(f"url {row['url']!r} must be an https:// URL")
    if not _SHA256_RE.fullmatch(row["sha256"]):
        raise bad(f"sha256 {row['sha256']!r} must be 64 lower-case hexadecimal digits")
    numbers = {}
    for column in ("bytes", "width", "height"):
        value = row[column]
        if not value.isdigit() or int(value) <= 0:
            raise bad(f"{column} {value!r} must be a positive whole number")
        numbers[column] = int(value)
    for column in ("title", "artist", "rights"):
        if not row[column]:
            raise bad(f"{column} is empty (write 'unknown' when it is not known)")
    return Sample(name=name, kind=row["kind"], file=row["file"], title=row["title"], artist=row["artist"],
                  year=row["year"] or None, rights=row["rights"], url=row["url"], sha256=row["sha256"],
                  **numbers)


def load_manifest(path=None) -> dict[str, Sample]:
    """Read and validate a manifest (default: the shipped one); returns ``{name: Sample}`` in file order.

    Checks: the header is exactly :data:`MANIFEST_COLUMNS`; every row has all the
    fields; names are unique lower-case identifiers; kind is ``style`` or
    ``content``; ``file`` is a plain relative path; ``url`` is https; ``sha256`` is
    64 hex digits; ``bytes``, ``width`` and ``height`` are positive integers.
    Raises :class:`ManifestError` naming the file and the row.
    """
    path = manifest_path() if path is None else path
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read the sample manifest {source}: {err}. Reinstall nstlib "
                            f"(pip install -e .) or restore data/images.tsv.") from err
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(c.strip() for c in rows[0]) != MANIFEST_COLUMNS:
        raise ManifestError(f"{source}: the first line must be the header {' '.join(MANIFEST_COLUMNS)} "
                            f"(tab-separated), got {rows[0] if rows else 'an empty file'}")
    samples: dict[str, Sample] = {}
    for line, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        sample = _parse_row(source, line, fields)
        if sample.name in samples:
            raise _row_error(source, line, sample.name, "repeats a name used by an earlier row")
        samples[sample.name] = sample
    return samples


SAMPLES: dict[str, Sample] = load_manifest()
"""Every sample of the shipped manifest, by name, in manifest order."""


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def sample_names(kind: str | None = None) -> list[str]:
    """Names of the samples (of one ``kind``, ``"style"`` or ``"content"``, when given), in manifest order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(KINDS)} (or None for every sample)")
    return [name for name, sample in SAMPLES.items() if kind is None or sample.kind == kind]


def is_sample(name) -> bool:
    """True when ``name`` names a sample (case-insensitive, ``-`` equals ``_``)."""
    return isinstance(name, str) and _key(name) in SAMPLES


def get_sample(name: str) -> Sample:
    """The :class:`Sample` called ``name``; ``"Rain-Princess"`` finds ``rain_princess``.

    Raises ``ValueError`` listing the known names when there is no such sample.
    """
    if isinstance(name, Sample):
        return name
    if not isinstance(name, str) or _key(name) not in SAMPLES:
        raise ValueError(f"{name!r} is not a sample image; known samples: {', '.join(SAMPLES)} "
                         f"(or pass a path to your own image)")
    return SAMPLES[_key(name)]


def _copy_checked(src: Path, dest: Path, sha256: str) -> None:
    """Copy ``src`` to ``dest`` atomically, hashing on the way; raise DownloadError on a mismatch."""
    def copy(out) -> None:
        digest = hashlib.sha256()
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            raise DownloadError(str(src), f"the mirror file's sha256 is {got}, expected {sha256}",
                                f"replace {src} with the original file (or delete it so the next source is "
                                "used), or unset NSTLIB_MIRROR")

    atomic_write(dest, copy)


def _save_png(image, dest: Path) -> None:
    """Save a PIL image as PNG atomically."""
    atomic_write(dest, lambda out: image.save(out, format="PNG"))


def _from_mirror(sample: Sample, mirror: str, cached: Path, progress: bool) -> bool:
    """Fill ``cached`` from the mirror; False when a mirror folder lacks the file."""
    if mirror.lower().startswith(("http://", "https://")):
        # The sha256 is checked, so a plain-http mirror (say, on the local network) is acceptable.
        download(mirror.rstrip("/") + "/" + sample.file, cached, sha256=sample.sha256, size=sample.bytes,
                 progress=progress, allow_http=True)
        return True
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{config.ENV_MIRROR}={mirror!r} is neither an existing folder nor an "
                                "http(s):// URL: fix the path or unset it")
    src = folder / sample.file
    if not src.is_file():
        log.info("mirror %s has no %s; trying the next source", folder, sample.file)
        return False
    _copy_checked(src, cached, sample.sha256)
    return True


def offline_hints(sample: Sample) -> str:
    """The ways to get ``sample`` without this machine downloading it, for error messages: the same
    hints as the VGG19 weights' and the pretrained models' errors (proxy, placed by hand, quick mode),
    plus ``NSTLIB_MIRROR``."""
    cached = config.cache_dir() / "images" / sample.file
    return (f"Are you offline, or behind a proxy (set HTTPS_PROXY)? To install it by hand, download {sample.url} "
            f"on a machine with internet access and place it at {cached} ({config.ENV_CACHE} moves that folder), "
            f"or set {config.ENV_MIRROR} to a folder or URL that holds {sample.file}. For an offline smoke test "
            f"of the course set {config.ENV_QUICK}=1.")


def fetch_sample(name: str, *, progress: bool = True) -> Path:
    """The local path of sample ``name``, fetched and checked if needed (see the module docstring).

    Returns the cached image (``<cache>/images/<file>``) whose SHA-256 matches the
    manifest or, in quick mode without a cached or mirrored copy, the synthetic
    stand-in ``<cache>/standins/<name>.png``. Raises :class:`DownloadError` when no
    source delivers the checked file (from the pinned URL: with :func:`offline_hints` in its fix).
    """
    sample = get_sample(name)
    cached = config.cache_dir() / "images" / sample.file
    if cached.is_file():
        got = sha256_file(cached)
        if got == sample.sha256:
            return cached
        log.warning("cached %s has sha256 %s, expected %s: fetching it again", cached, got, sample.sha256)
        cached.unlink()
    mirror = config.mirror()
    if mirror and _from_mirror(sample, mirror, cached, progress):
        return cached
    if config.quick_mode():
        config.announce()
        path = config.cache_dir() / "standins" / f"{sample.name}.png"
        _save_png(standin(sample), path)
        return path
    try:
        return download(sample.url, cached, sha256=sample.sha256, size=sample.bytes, progress=progress)
    except DownloadError as error:
        raise DownloadError(error.url, error.reason, f"{error.fix.rstrip('. ')}. {offline_hints(sample)}") from error


def standin_size(sample: Sample, longer_side: int = synthetic.STANDIN_SIZE) -> tuple[int, int]:
    """``(width, height)`` with the sample's aspect ratio and ``longer_side`` pixels on the longer side."""
    if isinstance(longer_side, bool) or not isinstance(longer_side, int) or longer_side < 1:
        raise ValueError(f"longer_side={longer_side!r} must be a positive whole number of pixels")
    w, h = sample.width, sample.height
    if w >= h:
        return longer_side, max(1, round(longer_side * h / w))
    return max(1, round(longer_side * w / h)), longer_side


def standin(sample_or_name: Sample | str, longer_side: int = synthetic.STANDIN_SIZE) -> Image.Image:
    """The synthetic stand-in for a manifest sample (a :class:`Sample` or its name).

    A ``content`` sample gets :func:`~nstlib.data.synthetic.content_standin`, a ``style`` sample
    :func:`~nstlib.data.synthetic.style_standin`, at the manifest's aspect ratio with ``longer_side`` pixels
    on the longer side (:func:`standin_size`).
    """
    sample = get_sample(sample_or_name)
    width, height = standin_size(sample, longer_side)
    make = synthetic.content_standin if sample.kind == "content" else synthetic.style_standin
    return make(sample.name, width, height)
