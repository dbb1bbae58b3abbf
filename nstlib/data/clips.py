"""Short public-domain video clips for the video exploration, fetched on demand.

Each clip is an original file on Wikimedia Commons, pinned by its direct URL
``https://upload.wikimedia.org/wikipedia/commons/<h>/<hh>/<file>``, where ``<h>`` and ``<hh>``
are the first one and two hex digits of the MD5 of ``<file>`` (Commons' storage layout: the URL
stays valid as long as the file keeps its name, which Commons keeps for files used in articles).

Commons publishes no checksum next to the URL and none could be computed when the clip was
chosen, so :func:`fetch_clip` **trusts on first use**, as :mod:`nstlib.data.pretrained` does: the
first download records the file's SHA-256, size and URL in ``<file>.sha256.json`` beside it, and
from then on a file with another SHA-256 (a new upload under the same name, or a damaged copy) is
refused with a message saying how to accept it. A clip whose :attr:`Clip.sha256` is filled in is
checked against that instead.

Order of sources (``<cache>`` is ``NSTLIB_CACHE``, see :mod:`nstlib.config`):

1. the cached ``<cache>/clips/<file>`` (checked against the recorded or pinned SHA-256);
2. in quick mode (``NSTLIB_QUICK=1``) only: a synthetic stand-in clip
   (:func:`nstlib.video.make_synthetic_clip`, 24 frames of 64x48 px at 12 fps) written as
   ``<cache>/clips/standins/<name>.mp4``, after the quick-mode banner; quick mode never
   touches the network;
3. the pinned URL, downloaded with :func:`nstlib.data.download.download` (atomic, resumable).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import urllib.parse
from pathlib import Path

from .. import config
from ..fileio import atomic_write_json
from ..video import make_synthetic_clip
from .download import DownloadError, download, sha256_file

__all__ = ["CLIPS", "DEFAULT_CLIP", "Clip", "ClipError", "clip_names", "clip_path", "commons_url", "fetch_clip",
           "get_clip", "standin_clip"]

RECORD_SUFFIX = ".sha256.json"
COMMONS = "https://upload.wikimedia.org/wikipedia/commons"


class ClipError(ValueError):
    """A clip file that differs from the one first trusted (or from its pinned SHA-256); the message says what to do."""


def commons_url(file: str) -> str:
    """The direct URL of Wikimedia Commons' original ``file`` (spaces as underscores): ``<h>/<hh>/<file>``
    with ``h``, ``hh`` the first one and two hex digits of ``md5(file)``."""
    name = file.replace(" ", "_")
    digest = hashlib.md5(name.encode("utf-8")).hexdigest()
    return f"{COMMONS}/{digest[0]}/{digest[:2]}/{urllib.parse.quote(name)}"


@dataclasses.dataclass(frozen=True)
class Clip:
    """A pinned clip: where it comes from, what it shows and why it may be used.

    ``sha256`` and ``bytes`` are None while they are unknown (trust on first use: see the
    module docstring); ``page`` is the Commons description page with its licence.
    """

    name: str
    file: str
    title: str
    author: str
    year: int
    rights: str
    url: str
    page: str
    sha256: str | None = None
    bytes: int | None = None

    @property
    def credit(self) -> str:
        """One line for a caption: title, year, author, rights and source."""
        return f"{self.title} ({self.year}), {self.author}. {self.rights}. Wikimedia Commons: {self.page}"


def _commons(name: str, file: str, title: str, author: str, year: int, rights: str) -> Clip:
    return Clip(name=name, file=file, title=title, author=author, year=year, rights=rights, url=commons_url(file),
                page=f"https://commons.wikimedia.org/wiki/File:{urllib.parse.quote(file)}")


CLIPS: dict[str, Clip] = {
    clip.name: clip for clip in (
        # The oldest surviving film: about two seconds of people walking in a garden, Ogg Theora, no sound.
        _commons("roundhay_garden", "Roundhay_Garden_Scene.ogg", "Roundhay Garden Scene", "Louis Le Prince", 1888,
                 "Public domain (filmed 1888; its author died in 1890)"),
        # Muybridge's galloping horse as an animated GIF: a few frames of fast motion, a loop.
        _commons("horse_in_motion", "The_Horse_in_Motion-anim.gif", "The Horse in Motion", "Eadweard Muybridge",
                 1878, "Public domain (photographed 1878; its author died in 1904)"),
    )
}
"""The clips :func:`fetch_clip` knows, by name."""

DEFAULT_CLIP = "roundhay_garden"
"""The clip the notebook stylises."""


def clip_names() -> list[str]:
    """The names of :data:`CLIPS`, sorted."""
    return sorted(CLIPS)


def get_clip(name: str) -> Clip:
    """The :class:`Clip` called ``name``; ValueError listing the names otherwise."""
    if name not in CLIPS:
        raise ValueError(f"clip {name!r} is not known: choose one of {', '.join(clip_names())}")
    return CLIPS[name]


def clip_path(name: str) -> Path:
    """Where the clip is cached: ``<cache>/clips/<file>`` (not created here)."""
    return config.cache_dir() / "clips" / get_clip(name).file


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _check(clip: Clip, path: Path) -> str:
    """The file's SHA-256; ClipError when it differs from the pinned or the first-trusted one."""
    digest = sha256_file(path)
    if clip.sha256 is not None:
        if digest != clip.sha256:
            raise ClipError(f"{path} has SHA-256 {digest}, but clip {clip.name!r} is pinned to {clip.sha256}: "
                            f"delete {path} and fetch it again")
        return digest
    record = _record_path(path)
    if record.is_file():
        try:
            known = json.loads(record.read_text(encoding="utf-8"))["sha256"]
        except (ValueError, KeyError, TypeError) as error:
            raise ClipError(f"{record} is damaged ({error}): delete it (the clip will be trusted anew)") from error
        if known != digest:
            raise ClipError(f"{path} has SHA-256 {digest}, but the copy of {clip.url} first downloaded had {known} "
                            f"(recorded in {record}): the file changed upstream or on the way. If you trust the new "
                            f"file, delete {record} and call again; otherwise delete {path}.")
    return digest


def _record(clip: Clip, path: Path, digest: str) -> None:
    """Trust on first use: write ``<file>.sha256.json`` unless it exists (or the clip has a pinned SHA-256)."""
    record = _record_path(path)
    if clip.sha256 is None and not record.is_file():
        atomic_write_json(record, {
            "sha256": digest, "size": path.stat().st_size, "url": clip.url,
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "note": "trust on first use: a later file with another sha256 is refused"})


def standin_clip(name: str) -> Path:
    """The quick-mode stand-in for clip ``name``: ``<cache>/clips/standins/<name>.mp4`` (made once; needs PyAV)."""
    get_clip(name)
    path = config.cache_dir() / "clips" / "standins" / f"{name}.mp4"
    if not path.is_file():
        make_synthetic_clip(path, frames=24, size=(64, 48), fps=12)
    return path


def fetch_clip(name: str = DEFAULT_CLIP, *, url: str | None = None, progress: bool = True) -> Path:
    """The local path of clip ``name`` (see the module docstring for the order of sources).

    ``url`` replaces the pinned URL (a mirror of the same file); the record keeps the URL used.

    The first download records the clip's SHA-256 (trust on first use); a cached or downloaded
    file with another SHA-256 raises :class:`ClipError` (a download that fails that check is
    deleted). In quick mode without a cached copy, returns the synthetic stand-in
    (:func:`standin_clip`) after printing the quick-mode banner.

    Raises:
        ValueError: an unknown ``name``.
        ClipError: the file differs from the one first trusted.
        DownloadError: the clip could not be downloaded; the fix says how to place it by hand.
    """
    clip = get_clip(name)
    if url is not None:
        clip = dataclasses.replace(clip, url=url)
    path = clip_path(name)
    if path.is_file():
        _record(clip, path, _check(clip, path))
        return path
    if config.quick_mode():
        config.announce()
        return standin_clip(name)
    try:
        download(clip.url, path, sha256=clip.sha256, size=clip.bytes, progress=progress)
    except DownloadError as error:
        raise DownloadError(error.url, error.reason,
                            f"{error.fix.rstrip('. ')}. To install it by hand, download {clip.url} on a machine with "
                            f"internet access and place it at {path} ({config.ENV_CACHE} moves that folder); for an "
                            f"offline smoke test set {config.ENV_QUICK}=1.") from error
    try:
        digest = _check(clip, path)
    except ClipError:
        path.unlink(missing_ok=True)
        raise
    _record(clip, path, digest)
    return path
