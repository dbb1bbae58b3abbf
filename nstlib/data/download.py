"""Checked, resumable, atomic downloads with the standard library.

:func:`download` is the one routine that touches the network. It

* accepts only ``https`` URLs (plain ``http`` only for this machine, 127.0.0.1 /
  localhost / ::1, or with ``allow_http=True``), and follows a redirect only to a
  URL that passes the same check, before contacting it,
* writes into ``<dest>.part`` and renames it to ``dest`` with :func:`os.replace`
  only after every check passed, so ``dest`` is never half-written or corrupt,
* resumes a leftover ``.part`` with an HTTP ``Range: bytes=N-`` request
  (206 + matching ``Content-Range``: append; 200: the server ignored the range,
  start again from zero; 416: start again from zero),
* retries server errors (5xx), refused or reset connections, connections closed
  before ``Content-Length`` bytes arrived and time-outs, ``retries`` times,
  waiting ``backoff * 2**k`` seconds before retry ``k`` (k = 0, 1, ...) and
  resuming from the ``.part`` file; client errors (4xx) are not retried,
* refuses HTML pages (a login, rate-limit or share page sent instead of the file)
  unless ``expect_html=True``, then checks the size and the sha256.

After a network failure the ``.part`` file stays, so the next call resumes; after a
failed check (HTML, size, sha256) it is deleted. Every failure raises
:class:`DownloadError`, whose message names the URL, the reason and the fix.

Several processes may fetch the same file at once (``nstlib batch --workers 2`` on an
empty cache does): the ``.part`` file of ``dest`` is only ever written under an
inter-process lock (:func:`file_lock`, a ``filelock.FileLock``), so one process downloads
while the others wait; a waiter that finds ``dest`` freshly written by another process
(and matching ``size`` and ``sha256`` when given) returns it without a request. The lock
files live in ``<cache>/locks/`` (:func:`lock_path`: at most 4096 of them, shared by all
files), never beside ``dest``; they are empty and stay after use on purpose (deleting a
lock file another process is waiting on would let two processes hold "the" lock), so
they are harmless and may be deleted whenever no download is running. The operating
system releases a lock when its process dies, so a killed download never blocks the next
one (which resumes its ``.part`` file).

:func:`fetch_url` adds a cache: ``<cache>/urls/<sha1(url)[:16]>-<basename>``,
returned without any network access once it is there.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import ipaddress
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from tqdm import tqdm  # tqdm.write only: bars come from progress_bar

from .. import config

__all__ = ["DownloadError", "download", "fetch_url", "file_lock", "lock_path", "sha256_file", "url_cache_path",
           "user_agent"]

CHUNK_SIZE = 1 << 16
"""Bytes read from the network (and from files when hashing) at a time."""

_LOOPBACK_NAMES = {"localhost"}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_MAX_RESTARTS = 2

_HTML_HINT = (
    "the server sent an HTML page instead of the file. Open the URL in a browser to see it. Usual causes: "
    "a login page (the link needs an account or has expired), a rate-limit or error page (wait and retry), "
    "a share page instead of the file (Dropbox links need ?dl=1 at the end, Google Drive links need a direct "
    "download link), or a proxy / captive portal (log in to the network first). "
    "Pass expect_html=True if you really want an HTML page."
)


class DownloadError(OSError):
    """A download failed; the message names the URL, the reason and the fix.

    The parts are kept as attributes: ``url``, ``reason`` and ``fix``.
    """

    def __init__(self, url: str, reason: str, fix: str):
        self.url = url
        self.reason = reason
        self.fix = fix
        super().__init__(f"download of {url} failed: {reason}\nFix: {fix}")

    def __reduce__(self):
        return (type(self), (self.url, self.reason, self.fix))


class _Transient(Exception):
    """A failure worth retrying (network trouble, 5xx); the .part file stays."""

    def __init__(self, reason: str, fix: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class _Restart(Exception):
    """The .part file cannot be resumed: delete it and start from byte zero."""


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs that :func:`download` itself would accept (checked before contact)."""

    def __init__(self, allow_http: bool):
        super().__init__()
        self.allow_http = allow_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_url(newurl, self.allow_http)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def user_agent() -> str:
    """The ``User-Agent`` sent with every request: ``nstlib/<version> (neural style transfer course)``.

    The version is the installed package's (its metadata; importing ``nstlib`` here would be a cycle).
    """
    try:
        version = importlib.metadata.version("nstlib")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"nstlib/{version} (neural style transfer course)"


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes as 64 lower-case hex digits, read in chunks (any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, allow_http: bool) -> None:
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        raise DownloadError(url, f"only http(s) URLs can be downloaded, not {scheme or 'a bare path'!r}",
                            "give a full https://host/path URL (for a local file, open it directly)")
    if scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise DownloadError(url, "plain http is refused (it can be altered on the way)",
                            "use the https:// address of the same file, or pass allow_http=True if you "
                            "trust the network and check the sha256")


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = str(sha256).strip().lower()
    if not _SHA256_RE.fullmatch(value):
        raise ValueError(f"sha256={sha256!r} is not 64 hexadecimal digits: pass the file's SHA-256 or None")
    return value


def _status_hint(code: int) -> str:
    if code in (401, 403):
        return ("access was refused: the link may need a login, may have expired, or the host blocks "
                "automated downloads; open it in a browser, or use another copy (NSTLIB_MIRROR)")
    if code == 404:
        return "the file is not at that address (typo, or it moved upstream); check the URL in a browser"
    if code == 429:
        return "the server is rate-limiting you: wait a few minutes and retry, or use a mirror (NSTLIB_MIRROR)"
    return "check the URL in a browser; a 4xx answer means the request itself was refused"


def _timeout_fix(timeout: float) -> str:
    return (f"the network is slow or a proxy holds the connection: retry later, check the proxy settings "
            f"(HTTPS_PROXY), or pass a larger timeout= (it was timeout={timeout} s)")


_NETWORK_FIX = ("check the internet connection (and HTTPS_PROXY if you are behind a proxy), then call again: "
                "the partial download is kept and resumed")


def _looks_like_html(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a body) starts an HTML document."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return text.startswith(b"<!doctype html") or text.startswith(b"<html")


MIN_RATE = 1024
"""Bytes per second an attempt must average once it has run ``timeout`` seconds (see :func:`download`)."""


def _attempt(url: str, part: Path, *, size: int | None, timeout: float, progress: bool,
             allow_http: bool, expect_html: bool, desc: str, min_rate: float = MIN_RATE) -> None:
    """One request: fill ``part`` (resuming it when it exists). Raises _Transient, _Restart or DownloadError."""
    started = time.monotonic()
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_http))
    try:
        response = opener.open(request, timeout=timeout)
    except DownloadError:
        raise
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            raise _Restart() from err
        if err.code >= 500:
            raise _Transient(f"server error HTTP {err.code} {err.reason}",
                             "the server has trouble: retry later, or use a mirror (NSTLIB_MIRROR)") from err
        raise DownloadError(url, f"HTTP {err.code} {err.reason}", _status_hint(err.code)) from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _Transient(f"timed out after {timeout} s while connecting", _timeout_fix(timeout)) from err
        if isinstance(err.reason, ssl.SSLCertVerificationError):
            raise DownloadError(url, f"the server's certificate was refused ({err.reason})",
                                "a proxy may be intercepting https: install its certificate (SSL_CERT_FILE), "
                                "or set NSTLIB_MIRROR to a local copy") from err
        raise _Transient(f"could not connect ({err.reason})", _NETWORK_FIX) from err
    except TimeoutError as err:
        raise _Transient(f"timed out after {timeout} s waiting for the answer", _timeout_fix(timeout)) from err
    except (OSError, http.client.HTTPException) as err:
        raise _Transient(f"connection failed ({type(err).__name__}: {err})", _NETWORK_FIX) from err

    with response:
        status = response.status
        content_type = response.headers.get_content_type()
        if not expect_html and content_type in {"text/html", "application/xhtml+xml"}:
            part.unlink(missing_ok=True)
            raise DownloadError(url, f"got an HTML page (Content-Type {content_type})", _HTML_HINT)
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.strip().isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != offset:
                raise _Restart()  # not the range we asked for: start again
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        else:
            offset = 0  # 200: the server ignored the range (or there was none): start from zero
            total = length
            mode = "wb"
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise DownloadError(url, f"the server announces {total} bytes but {size} were expected",
                                "the file changed upstream (or the link serves something else): check the URL, "
                                "or use a mirror (NSTLIB_MIRROR) that holds the expected file")
        received = 0
        read = getattr(response, "read1", response.read)  # returns what has arrived: a trickle cannot hide in one read
        with open(part, mode) as f, config.progress_bar(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=desc, disable=not progress) as bar:
            while True:
                try:
                    chunk = read(CHUNK_SIZE)
                except TimeoutError as err:
                    raise _Transient(f"timed out after {timeout} s in the middle of the file "
                                     f"({offset + received} bytes in)", _timeout_fix(timeout)) from err
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(f"connection lost after {offset + received} bytes "
                                     f"({type(err).__name__}: {err})", _NETWORK_FIX) from err
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                elapsed = time.monotonic() - started
                if min_rate and elapsed > timeout and received < min_rate * elapsed:
                    raise _Transient(f"too slow: {received} bytes in {elapsed:.0f} s, under {min_rate:g} bytes/s "
                                     f"({offset + received} bytes in)", _NETWORK_FIX)
        if length is not None and received < length:
            raise _Transient(f"connection closed after {offset + received} of {offset + length} bytes", _NETWORK_FIX)


def _verify(url: str, part: Path, *, sha256: str | None, size: int | None, expect_html: bool) -> None:
    """Check a complete ``part`` file; delete it and raise DownloadError when a check fails."""
    if not expect_html:
        with open(part, "rb") as f:
            head = f.read(1024)
        if _looks_like_html(head):
            part.unlink(missing_ok=True)
            raise DownloadError(url, "the body is an HTML page, not the expected file", _HTML_HINT)
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink(missing_ok=True)
        raise DownloadError(url, f"size mismatch: expected {size} bytes, got {actual_size}",
                            "the partial file was deleted: retry; if it happens again the file changed "
                            "upstream: check the URL or use a mirror (NSTLIB_MIRROR)")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(url, f"sha256 mismatch: expected {sha256}, got {got}",
                                f"the bad file {part} was deleted: retry the download; if it fails again the "
                                "file changed upstream: use a mirror (NSTLIB_MIRROR) with the original file "
                                "or update the expected sha256 after checking the new file")


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file guarding ``target``: ``<cache>/locks/<first 3 hex digits of sha1(absolute target)>.lock``.

    Keyed by the absolute path (folders resolved), so every process naming the same file
    by any relative path or symbolic link of its folder uses the same lock. Files share
    the 4096 lock files at random: the folder stays small even after a crawl of thousands
    of images, and two unrelated downloads that happen to share one merely take turns.
    """
    target = Path(target).expanduser()
    absolute = Path(os.path.realpath(target.parent)) / target.name
    return config.cache_dir() / "locks" / f"{hashlib.sha1(str(absolute).encode('utf-8')).hexdigest()[:3]}.lock"


@contextmanager
def file_lock(target: str | os.PathLike, *, progress: bool = True) -> Iterator[None]:
    """Hold the inter-process lock of ``target`` (see :func:`lock_path`) for the ``with`` block.

    Waits as long as another process holds it (saying so once when ``progress``). When
    the lock folder cannot be created (a read-only cache), warns and runs unlocked.
    """
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(f"cannot create the lock folder {path.parent} ({error}), so {target} is written without a "
                      f"lock: do not fetch it from two processes at once, or set {config.ENV_CACHE} to a "
                      "writable folder", stacklevel=3)
        yield
        return
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            tqdm.write(f"{Path(target).name}: waiting for another download to finish (lock {path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _identity(path: Path) -> tuple[int, ...] | None:
    """What tells one version of a file from another: device, inode, size, modification time (None: no file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _fill_part(url: str, part: Path, name: str, *, size: int | None, timeout: float, retries: int,
               backoff: float, progress: bool, allow_http: bool, expect_html: bool, min_rate: float) -> None:
    """Complete ``part`` with retries and restarts (see :func:`download`); the caller holds the lock."""
    attempt = restarts = 0
    while True:
        try:
            _attempt(url, part, size=size, timeout=timeout, progress=progress, allow_http=allow_http,
                     expect_html=expect_html, desc=name, min_rate=min_rate)
            return
        except _Restart:
            part.unlink(missing_ok=True)
            restarts += 1
            if restarts > _MAX_RESTARTS:
                raise DownloadError(url, "the server keeps answering range requests inconsistently",
                                    "retry later; if it persists, download the file by hand") from None
        except _Transient as err:
            if attempt >= retries:
                raise DownloadError(url, f"{err.reason} (gave up after {attempt + 1} attempts)",
                                    err.fix or _NETWORK_FIX) from err.__cause__
            wait = backoff * 2**attempt
            if progress:
                tqdm.write(f"{name}: {err.reason}; retrying in {wait:g} s")
            time.sleep(wait)
            attempt += 1


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             timeout: float = 30.0, retries: int = 3, backoff: float = 1.0, progress: bool = True,
             allow_http: bool = False, expect_html: bool = False, min_rate: float = MIN_RATE) -> Path:
    """Download ``url`` to ``dest`` (replaced atomically) and return ``Path(dest)``.

    Args:
        url: an ``https`` URL (``http`` only for loopback hosts or with ``allow_http``).
        dest: the file to write; its folder is created. An existing file is replaced
            only once the new one passed every check.
        sha256: expected SHA-256 (64 hex digits) of the file, or None for no check.
        size: expected size in bytes, or None. Checked against the announced
            ``Content-Length`` before the body is read, and against the file after.
        timeout: seconds to wait for the connection and for each read.
        min_rate: bytes per second an attempt must average once it has run ``timeout``
            seconds; a slower one is abandoned and retried (resuming), so a server that
            trickles a byte now and then cannot keep a download waiting for ever. 0: no check.
        retries: how many times to retry after a transient failure (5xx, network
            error, time-out); 4xx answers are never retried.
        backoff: before retry ``k`` (0-based) wait ``backoff * 2**k`` seconds.
        progress: show a tqdm progress bar (total from ``Content-Length``).
        allow_http: accept plain http for non-loopback hosts.
        expect_html: accept an HTML body (otherwise it is refused as an error page).

    Concurrent calls for the same ``dest`` (threads or processes) take turns under
    :func:`file_lock`: one downloads; a call that waited and then finds a new ``dest``
    (of the right ``size`` and ``sha256``, when given) returns it at once.

    Raises:
        DownloadError: on any failure, naming the URL, the reason and the fix.
    """
    _check_url(url, allow_http)
    sha256 = _normalise_sha256(sha256)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size={size!r} must be a non-negative integer (bytes) or None")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries={retries!r} must be a non-negative integer")
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
    if backoff < 0:
        raise ValueError(f"backoff={backoff!r} must be >= 0 seconds")
    if not isinstance(min_rate, (int, float)) or isinstance(min_rate, bool) or min_rate < 0:
        raise ValueError(f"min_rate={min_rate!r} must be a number of bytes per second >= 0 (0: no check)")
    dest = Path(dest)
    if dest.is_dir():
        raise IsADirectoryError(f"dest={str(dest)!r} is a folder: pass the path of the file to write")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    before = _identity(dest)
    with file_lock(dest, progress=progress):
        after = _identity(dest)
        if after is not None and after != before and (size is None or after[2] == size) and (
                sha256 is None or sha256_file(dest) == sha256):
            return dest  # another process wrote it while this one waited for the lock
        _fill_part(url, part, dest.name, size=size, timeout=timeout, retries=retries, backoff=backoff,
                   progress=progress, allow_http=allow_http, expect_html=expect_html, min_rate=min_rate)
        _verify(url, part, sha256=sha256, size=size, expect_html=expect_html)
        os.replace(part, dest)
    return dest


def url_cache_path(url: str) -> Path:
    """Where :func:`fetch_url` keeps ``url``: ``<cache>/urls/<sha1(url)[:16]>-<basename>``.

    ``basename`` is the last segment of the URL's path (percent-decoded, with
    characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``;
    ``download`` when empty). The cache folder comes from ``NSTLIB_CACHE``.
    """
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "download"
    return config.cache_dir() / "urls" / f"{digest}-{name}"


def fetch_url(url: str, *, sha256: str | None = None, progress: bool = True, **download_kwargs) -> Path:
    """The cached copy of ``url``, downloaded with :func:`download` on the first call.

    A cached file is returned without any network access; when ``sha256`` is given
    it is checked first, and a mismatching cached file is deleted and downloaded
    again. ``download_kwargs`` (``size``, ``timeout``, ``retries``, ...) go to
    :func:`download`.
    """
    sha256 = _normalise_sha256(sha256)
    path = url_cache_path(url)
    if path.is_file():
        if sha256 is None:
            return path
        got = sha256_file(path)
        if got == sha256:
            return path
        warnings.warn(f"cached {path} has sha256 {got}, expected {sha256}: deleting it and downloading again",
                      stacklevel=2)
        path.unlink()
    return download(url, path, sha256=sha256, progress=progress, **download_kwargs)
