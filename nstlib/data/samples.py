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

**Trust on first use.** Where no checksum is published (Wikimedia Commons publishes none that
can be pinned without downloading), a row's ``sha256`` column says :data:`FIRST_USE` and its
``bytes``, ``width`` and ``height`` may be left empty. The first copy fetched (from any source
above) is then trusted: its SHA-256, size in bytes and pixel size are written to
``<cache>/images/<file>.sha256.json`` (:func:`record_path`), and every later use checks the
cached file, a mirror copy or a new download against that record, exactly as a pinned row is
checked against the manifest. A copy that differs is refused with an error naming the record
to delete if the new file is to be trusted.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import importlib.resources
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from .. import config
from ..fileio import atomic_write, atomic_write_json
from . import synthetic
from .download import DownloadError, download, sha256_file

__all__ = [
    "FIRST_USE",
    "KINDS",
    "MANIFEST_COLUMNS",
    "ManifestError",
    "SAMPLES",
    "Sample",
    "fetch_sample",
    "availability_note",
    "get_sample",
    "is_available",
    "is_sample",
    "load_manifest",
    "manifest_path",
    "offline_hints",
    "record_path",
    "recorded",
    "sample_names",
]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("name", "kind", "file", "title", "artist", "year", "rights", "url", "sha256", "bytes",
                    "width", "height")
"""The manifest's columns, in order (the first line of ``images.tsv``)."""

KINDS = ("style", "content")
"""The kinds of sample: a style image (painting) or a content image (photo)."""

FIRST_USE = "first-use"
"""The ``sha256`` of a manifest row whose checksum is recorded on first use (see the module docstring)."""

RECORD_SUFFIX = ".sha256.json"

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
    ``sha256`` is None for a row trusted on first use (:data:`FIRST_USE`), and so may be
    ``bytes``, ``width`` and ``height`` (:func:`recorded` has them once the file was fetched).
    """

    name: str
    kind: str
    file: str
    title: str
    artist: str
    year: str | None
    rights: str
    url: str
    sha256: str | None
    bytes: int | None
    width: int | None
    height: int | None

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
    first_use = row["sha256"] == FIRST_USE
    if not first_use and not _SHA256_RE.fullmatch(row["sha256"]):
        raise bad(f"sha256 {row['sha256']!r} must be 64 lower-case hexadecimal digits, or {FIRST_USE} when no "
                  "checksum is published (recorded on first use)")
    numbers: dict[str, int | None] = {}
    for column in ("bytes", "width", "height"):
        value = row[column]
        if first_use and not value:
            numbers[column] = None  # recorded on first use
        elif not value.isdigit() or int(value) <= 0:
            raise bad(f"{column} {value!r} must be a positive whole number"
                      + (" (or empty: recorded on first use)" if first_use else ""))
        else:
            numbers[column] = int(value)
    for column in ("title", "artist", "rights"):
        if not row[column]:
            raise bad(f"{column} is empty (write 'unknown' when it is not known)")
    return Sample(name=name, kind=row["kind"], file=row["file"], title=row["title"], artist=row["artist"],
                  year=row["year"] or None, rights=row["rights"], url=row["url"],
                  sha256=None if first_use else row["sha256"], **numbers)


def load_manifest(path=None) -> dict[str, Sample]:
    """Read and validate a manifest (default: the shipped one); returns ``{name: Sample}`` in file order.

    Checks: the header is exactly :data:`MANIFEST_COLUMNS`; every row has all the
    fields; names are unique lower-case identifiers; kind is ``style`` or
    ``content``; ``file`` is a plain relative path; ``url`` is https; ``sha256`` is
    64 hex digits (or :data:`FIRST_USE`); ``bytes``, ``width`` and ``height`` are positive
    integers (or empty in a first-use row).
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


def availability_note() -> str:
    """One sentence saying which sample images quick mode uses for real (cached or in a mirror folder,
    :func:`is_available`) and which it replaces by synthetic stand-ins (the course book's quick-mode banner)."""
    real = [name for name in SAMPLES if is_available(name)]
    if not real:
        return f"Sample images: none of the {len(SAMPLES)} is cached, so all are synthetic stand-ins."
    if len(real) == len(SAMPLES):
        return f"Sample images: all {len(SAMPLES)} are the real images, from the cache."
    return (f"Sample images: {len(real)} of {len(SAMPLES)} are the real images, from the cache ({', '.join(real)}); "
            f"the other {len(SAMPLES) - len(real)} are synthetic stand-ins.")


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


def record_path(sample: Sample | str) -> Path:
    """Where the first-use record of ``sample`` lives: ``<cache>/images/<file>.sha256.json``."""
    return config.cache_dir() / "images" / (get_sample(sample).file + RECORD_SUFFIX)


def recorded(sample: Sample | str) -> dict | None:
    """The first-use record of ``sample`` (``sha256``, ``bytes``, ``width``, ``height``, ``url``, ``source``,
    ``recorded``), or None when none was written yet. A damaged record raises :class:`DownloadError`
    saying to delete it."""
    path = record_path(sample)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not _SHA256_RE.fullmatch(record["sha256"]) or not isinstance(record["bytes"], int):
            raise ValueError("no 64-digit sha256 and whole number of bytes")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DownloadError(str(path), f"the first-use record is damaged ({error})",
                            f"delete {path}: the next fetch trusts the file anew") from error
    return record


def _expected(sample: Sample) -> tuple[str | None, int | None]:
    """The SHA-256 and size a copy of ``sample`` must have: the manifest's, else its first-use record's, else
    ``(None, bytes)`` (not used yet: the first copy is trusted)."""
    if sample.sha256 is not None:
        return sample.sha256, sample.bytes
    record = recorded(sample)
    return (None, sample.bytes) if record is None else (record["sha256"], record["bytes"])


def _record_first_use(sample: Sample, cached: Path, source: str) -> None:
    """Trust on first use: write :func:`record_path` for a first-use row that has none yet.

    The file must decode as an image (an error page would otherwise be trusted): if it does not,
    it is deleted and :class:`DownloadError` raised."""
    if sample.sha256 is not None or record_path(sample).is_file():
        return
    try:
        with Image.open(cached) as image:
            width, height = image.size
            image.verify()
    except (OSError, SyntaxError) as error:  # PIL raises these for files that are not images
        cached.unlink(missing_ok=True)
        raise DownloadError(source, f"the file is not a readable image ({error}), so it was deleted",
                            f"check {sample.url} in a browser; the manifest row {sample.name!r} may need a new URL")
    atomic_write_json(record_path(sample), {
        "sha256": sha256_file(cached), "bytes": cached.stat().st_size, "width": width, "height": height,
        "url": sample.url, "source": source,
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": "trust on first use: every later copy of this sample must have this sha256"})


def is_available(sample: Sample | str) -> bool:
    """True when ``sample`` can be had without the network: a cached copy that passes its check (the
    manifest's SHA-256, its first-use record, or no record yet), or a copy in an ``NSTLIB_MIRROR`` folder."""
    sample = get_sample(sample)
    cached = config.cache_dir() / "images" / sample.file
    sha256, _ = _expected(sample)
    if cached.is_file() and (sha256 is None or sha256_file(cached) == sha256):
        return True
    mirror = config.mirror()
    return bool(mirror and not mirror.lower().startswith(("http://", "https://"))
                and (Path(mirror).expanduser() / sample.file).is_file())


def _copy_checked(src: Path, dest: Path, sha256: str | None) -> None:
    """Copy ``src`` to ``dest`` atomically, hashing on the way; raise DownloadError on a mismatch (None: no check)."""
    def copy(out) -> None:
        digest = hashlib.sha256()
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DownloadError(str(src), f"the mirror file's sha256 is {got}, expected {sha256}",
                                f"replace {src} with the original file (or delete it so the next source is "
                                "used), or unset NSTLIB_MIRROR")

    atomic_write(dest, copy)


def _save_png(image, dest: Path) -> None:
    """Save a PIL image as PNG atomically."""
    atomic_write(dest, lambda out: image.save(out, format="PNG"))


def _from_mirror(sample: Sample, mirror: str, cached: Path, progress: bool) -> bool:
    """Fill ``cached`` from the mirror; False when a mirror folder lacks the file."""
    sha256, size = _expected(sample)
    if mirror.lower().startswith(("http://", "https://")):
        # The sha256 is checked, so a plain-http mirror (say, on the local network) is acceptable.
        download(mirror.rstrip("/") + "/" + sample.file, cached, sha256=sha256, size=size,
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
    _copy_checked(src, cached, sha256)
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
    manifest (or, for a first-use row, its record; the first copy is recorded) or, in quick
    mode without a cached or mirrored copy, the synthetic stand-in
    ``<cache>/standins/<name>.png``. Raises :class:`DownloadError` when no source delivers
    the checked file (from the pinned URL: with :func:`offline_hints` in its fix).
    """
    sample = get_sample(name)
    cached = config.cache_dir() / "images" / sample.file
    sha256, size = _expected(sample)
    if cached.is_file():
        got = sha256_file(cached)
        if sha256 is None:  # a first-use row whose file was placed in the cache by hand: trusted now
            _record_first_use(sample, cached, str(cached))
            return cached
        if got == sha256:
            return cached
        log.warning("cached %s has sha256 %s, expected %s: fetching it again", cached, got, sha256)
        cached.unlink()
    mirror = config.mirror()
    if mirror and _from_mirror(sample, mirror, cached, progress):
        _record_first_use(sample, cached, mirror)
        return cached
    if config.quick_mode():
        config.announce()
        path = config.cache_dir() / "standins" / f"{sample.name}.png"
        _save_png(standin(sample), path)
        return path
    try:
        download(sample.url, cached, sha256=sha256, size=size, progress=progress)
    except DownloadError as error:
        if sample.sha256 is None and sha256 is not None and error.reason.startswith("sha256 mismatch"):
            record = record_path(sample)
            raise DownloadError(error.url, error.reason, f"the URL no longer serves the file first used here (its "
                                f"SHA-256 is recorded in {record}). If you trust the new file, delete {record} and "
                                "fetch again") from error
        raise DownloadError(error.url, error.reason, f"{error.fix.rstrip('. ')}. {offline_hints(sample)}") from error
    _record_first_use(sample, cached, sample.url)
    return cached


def standin_size(sample: Sample, longer_side: int = synthetic.STANDIN_SIZE) -> tuple[int, int]:
    """``(width, height)`` with the sample's aspect ratio and ``longer_side`` pixels on the longer side
    (square when the manifest leaves the pixel size to be recorded on first use)."""
    if isinstance(longer_side, bool) or not isinstance(longer_side, int) or longer_side < 1:
        raise ValueError(f"longer_side={longer_side!r} must be a positive whole number of pixels")
    w, h = (sample.width, sample.height) if sample.width and sample.height else (1, 1)
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
