"""Safe extraction of ``.zip`` and ``.tar`` / ``.tar.gz`` / ``.tgz`` archives.

An archive from the internet can try to write outside the folder it is extracted to
("zip slip"): a member called ``/etc/passwd`` or ``../../.bashrc``, a symbolic link to
``/etc`` followed by a member ``link/passwd``, a hard link to a file elsewhere, a device
file. :func:`safe_extract` checks every member it will extract *before* writing
anything and refuses the whole archive when one is unsafe.

Rules (a member breaking one raises ``ValueError`` naming the archive and the member):

* its name must be relative: no leading ``/``, no drive letter (``C:``), no backslash,
  no NUL character, and no ``..`` component (``.`` components and empty ones are dropped);
* it must be a regular file or a directory: symbolic links, hard links, device files,
  FIFOs are refused (whatever their target), and so are encrypted zip members;
* two members may not land on the same path, and a file may not be used as a folder.

Decompression bombs (a small archive that expands to gigabytes) are refused before anything
is written, from the sizes the archive declares for the members to extract:

* their total may not exceed ``max_bytes`` (:data:`DEFAULT_MAX_BYTES`, 1 GiB, unless the
  caller knows better: the dataset downloads pass limits that fit their archives);
* ``total / packed`` may not exceed ``max_ratio`` (:data:`DEFAULT_MAX_RATIO`, 100), where
  ``packed`` is the compressed size of those members in a zip and the size of the whole
  file for a tar. Photos and model weights barely compress (ratio about 1) and text about
  3 to 10, while zeros deflate about 1000-fold; totals up to :data:`RATIO_GRACE_BYTES`
  (1 MiB) are never refused for their ratio.

While writing, a member whose data holds more bytes than its header declares is stopped at
the declared size and the whole archive is refused, as is one holding fewer (``tarfile``
never reads past a member's declared size; a zip member's stream is read to its real end).

Extraction writes into a fresh temporary folder beside ``dest`` and then renames into
place: the whole folder when ``dest`` does not exist yet, otherwise file by file (each
replacement atomic). A failure while reading or writing (a damaged archive, a full disk)
removes the temporary folder, so ``dest`` never holds a half-written file. File modes,
owners and times are not restored (files get the default permissions).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from ..validate import non_negative_number, optional_positive_int

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_RATIO", "RATIO_GRACE_BYTES", "archive_kind", "archive_members",
           "safe_extract"]

DEFAULT_MAX_BYTES = 1 << 30
"""Default cap (1 GiB) on the total declared size of the files :func:`safe_extract` writes."""

DEFAULT_MAX_RATIO = 100
"""Default cap on declared size / compressed size (photos and weights: about 1; zeros: about 1000)."""

RATIO_GRACE_BYTES = 1 << 20
"""Totals up to this many bytes (1 MiB) are never refused for their compression ratio."""

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20


@dataclass
class _Member:
    name: str  # as stored in the archive
    parts: tuple[str, ...]  # normalised path components
    is_dir: bool
    open: Callable[[], BinaryIO] | None  # opens the file's bytes (None for folders)
    size: int = 0  # declared (uncompressed) size
    packed: int = 0  # compressed size (zip only; 0 in a tar, whose compression is of the whole stream)


def archive_kind(path: str | os.PathLike) -> str:
    """``"zip"`` or ``"tar"``: from the file name (``.zip``; ``.tar``, ``.tar.gz``, ``.tgz``, ...), else from its bytes.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` when it is
    neither a zip nor a tar archive (for instance an HTML error page saved as ``.zip``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive {path} does not exist (or is not a file)")
    name = path.name.lower()
    if name.endswith(".zip"):
        kind = "zip"
    elif name.endswith(_TAR_SUFFIXES):
        kind = "tar"
    else:
        kind = "zip" if zipfile.is_zipfile(path) else "tar" if _is_tar(path) else None
        if kind is None:
            raise ValueError(f"{path} is neither a zip nor a tar archive ({_head(path)})")
        return kind
    ok = zipfile.is_zipfile(path) if kind == "zip" else _is_tar(path)
    if not ok:
        raise ValueError(f"{path} is named like a {kind} archive but is not one ({_head(path)}); "
                         "it may be an HTML error page or an incomplete download: delete it and fetch it again")
    return kind


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(32)
    return f"{path.stat().st_size} bytes starting with {head!r}"


def _normalise(archive: Path, name: str) -> tuple[str, ...]:
    """The safe path components of member ``name``, or ValueError."""
    def bad(reason: str) -> ValueError:
        return ValueError(f"{archive}: refusing to extract member {name!r}: {reason}. Nothing was extracted; "
                          "the archive may be malicious or damaged: get it from a trusted source")

    if "\x00" in name:
        raise bad("its name contains a NUL character")
    if "\\" in name:
        raise bad("its name contains a backslash (a Windows path that could escape the destination)")
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise bad("it is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise bad("its path contains '..' (it would be written outside the destination)")
    return parts


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        is_dir = info.is_dir() or kind == stat.S_IFDIR
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else f"a special file (mode {oct(mode)})"
            raise ValueError(f"{archive}: refusing to extract member {info.filename!r}: it is {what}; only "
                             "regular files and folders are extracted. Nothing was extracted")
        if info.flag_bits & 0x1:
            raise ValueError(f"{archive}: member {info.filename!r} is encrypted; extract it by hand with its password")
        members.append(_Member(info.filename, _normalise(archive, info.filename), is_dir,
                               None if is_dir else (lambda info=info: zf.open(_unbounded(info))),
                               0 if is_dir else info.file_size, 0 if is_dir else info.compress_size))
    return members


def _unbounded(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A copy of ``info`` declaring an unreachable size, so that ``zipfile`` reads the member's real
    stream: left alone it stops at the declared size and fails the CRC check there, which would hide
    a header that lies. :func:`_copy_member` enforces the declared size itself; the CRC is still
    checked at the end of the stream."""
    info = copy.copy(info)
    info.file_size = 1 << 62
    return info


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.issym() or info.islnk():
            what = "a symbolic link" if info.issym() else "a hard link"
            raise ValueError(f"{archive}: refusing to extract member {info.name!r}: it is {what} "
                             f"(to {info.linkname!r}); links are never extracted. Nothing was extracted")
        if not (info.isfile() or info.isdir()):
            raise ValueError(f"{archive}: refusing to extract member {info.name!r}: it is a device file or FIFO; "
                             "only regular files and folders are extracted. Nothing was extracted")
        members.append(_Member(info.name, _normalise(archive, info.name), info.isdir(),
                               None if info.isdir() else (lambda info=info: tf.extractfile(info)),
                               0 if info.isdir() else info.size))
    return members


def _check_layout(archive: Path, members: list[_Member]) -> None:
    """Refuse two members on one path and a file used as a folder."""
    files: dict[tuple[str, ...], str] = {}
    dirs: dict[tuple[str, ...], str] = {}
    for m in members:
        if not m.parts:
            if not m.is_dir:
                raise ValueError(f"{archive}: member {m.name!r} has an empty file name. Nothing was extracted")
            continue
        if m.parts in files or (not m.is_dir and m.parts in dirs):
            other = files.get(m.parts) or dirs.get(m.parts)
            raise ValueError(f"{archive}: members {other!r} and {m.name!r} would be written to the same path. "
                             "Nothing was extracted; the archive may be malicious or damaged")
        (dirs if m.is_dir else files)[m.parts] = m.name
    for m in members:
        for i in range(1, len(m.parts)):
            if m.parts[:i] in files:
                raise ValueError(f"{archive}: member {m.name!r} needs {files[m.parts[:i]]!r} to be a folder, but "
                                 "it is a file. Nothing was extracted; the archive may be malicious or damaged")


def archive_members(archive_path: str | os.PathLike) -> list[str]:
    """The member names of a zip or tar archive, in archive order (folders included), without extracting."""
    archive = Path(archive_path)
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive, "r:*") as tf:
        return tf.getnames()


def _check_dest(archive: Path, dest: Path, listed: list[_Member]) -> None:
    """Before merging into an existing ``dest``: no existing link, file or folder may sit in a member's way."""
    for m in listed:
        path = dest
        for i, part in enumerate(m.parts):
            path = path / part
            last = i == len(m.parts) - 1
            where = "/".join(m.parts)
            if path.is_symlink() and (not last or m.is_dir):
                raise ValueError(f"{archive}: {path} is a symbolic link inside the destination; extracting "
                                 f"{where!r} through it could write elsewhere. Remove it first")
            if path.exists() and (not last or m.is_dir) and not path.is_dir():
                raise ValueError(f"{archive}: {path} is a file but the archive needs it to be a folder for "
                                 f"{where!r}. Remove it or extract elsewhere")
            if last and not m.is_dir and path.is_dir() and not path.is_symlink():
                raise ValueError(f"{archive}: cannot write member {m.name!r}: {path} is a folder. "
                                 "Remove it or extract elsewhere")


def _make_room(root: Path, member: _Member) -> Path | None:
    """Create ``member``'s folder under ``root`` (a directory member: returns None) or the parent
    folder of its file (returns the file's path, not yet written)."""
    target = root.joinpath(*member.parts)
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _check_limits(archive: Path, files: list[_Member], packed: int, max_bytes: int | None,
                  max_ratio: float | None) -> None:
    """Refuse, before writing, files declaring more than ``max_bytes`` in all or expanding ``packed``
    compressed bytes more than ``max_ratio``-fold (totals up to RATIO_GRACE_BYTES excepted)."""
    total = sum(m.size for m in files)
    bomb = "Nothing was extracted; an archive expanding far beyond its expected size may be a decompression bomb."
    if max_bytes is not None and total > max_bytes:
        raise ValueError(f"{archive}: refusing to extract {len(files)} file(s) declaring {total:,} bytes in all, "
                         f"more than max_bytes={max_bytes:,}. {bomb} If you trust the archive, pass a larger "
                         "max_bytes")
    if max_ratio is not None and total > max(max_ratio * packed, RATIO_GRACE_BYTES):
        raise ValueError(f"{archive}: refusing to extract: {packed:,} compressed bytes would expand to {total:,} "
                         f"bytes ({total / max(packed, 1):,.0f}-fold), more than max_ratio={max_ratio:g}. {bomb} "
                         "If you trust the archive, pass a larger max_ratio (or None)")


def _copy_member(archive: Path, member: _Member, src: BinaryIO, out: BinaryIO) -> None:
    """Copy ``member``'s bytes; stop at its declared size and refuse it when ``src`` holds more."""
    left = member.size
    while chunk := src.read(min(_CHUNK, left + 1)):
        out.write(chunk[:left])
        if len(chunk) > left:
            raise ValueError(f"{archive}: member {member.name!r} holds more than the {member.size:,} bytes its "
                             f"header declares: stopped after writing {member.size:,} bytes. Nothing was "
                             "extracted; the archive is damaged or a decompression bomb: get it from a trusted "
                             "source")
        left -= len(chunk)
    if left:
        raise ValueError(f"{archive}: member {member.name!r} holds only {member.size - left:,} of the "
                         f"{member.size:,} bytes its header declares. Nothing was extracted; the archive is "
                         "damaged: delete it and fetch it again")


def _write_members(archive: Path, dest: Path, listed: list[_Member]) -> None:
    """Write ``listed`` into a temporary folder beside ``dest``, then rename into place (see the module docstring)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        for m in listed:
            target = _make_room(tmp, m)
            if target is not None:
                with m.open() as src, open(target, "xb") as out:
                    _copy_member(archive, m, src, out)
        if not dest.exists():
            os.rename(tmp, dest)
        else:
            for m in listed:
                final = _make_room(dest, m)
                if final is not None:
                    os.replace(tmp.joinpath(*m.parts), final)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise ValueError(f"{archive} is damaged ({type(error).__name__}: {error}): nothing was extracted; "
                         "delete it and fetch it again") from error
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _select(archive: Path, listed: list[_Member], members: Iterable[str] | None) -> list[_Member]:
    """The members named in ``members`` (all when None); ValueError naming unknown names."""
    if members is None:
        return listed
    wanted = list(members)
    names = {m.name for m in listed}
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ValueError(f"{archive} has no member(s) {unknown}; it holds {sorted(names)[:10]}")
    wanted_set = set(wanted)
    return [m for m in listed if m.name in wanted_set]


def safe_extract(archive_path: str | os.PathLike, dest: str | os.PathLike, *,
                 members: Iterable[str] | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 max_ratio: float | None = DEFAULT_MAX_RATIO) -> list[Path]:
    """Extract a zip or tar archive into the folder ``dest`` safely; return the extracted files' paths.

    ``members`` (names exactly as the archive lists them, see :func:`archive_members`)
    restricts extraction to those entries; ``None`` extracts everything. Every member
    to extract is validated first (see the module docstring); a single unsafe one raises
    ``ValueError`` naming the archive and the member, and nothing is written (not even
    ``dest``). Files are written into a temporary folder beside ``dest`` and then renamed
    into place; files already in ``dest`` with the same names are replaced.

    ``max_bytes`` caps the total declared size of the files to extract and ``max_ratio``
    that total divided by their compressed size (the whole file's size for a tar); either
    may be None for no cap. Both are checked before anything is written, and a member
    yielding more than its declared size is stopped there (module docstring).

    Returns the paths ``dest / member`` of the regular files extracted, in archive order
    (folders are created but not listed).
    """
    archive = Path(archive_path)
    dest = Path(dest)
    kind = archive_kind(archive)
    max_bytes = optional_positive_int(max_bytes, "max_bytes", " (bytes the extracted files may take in all)")
    if max_ratio is not None and not non_negative_number(max_ratio, "max_ratio") >= 1:
        raise ValueError(f"max_ratio={max_ratio!r} must be a number >= 1 (extracted bytes per compressed byte) "
                         "or None")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"dest={str(dest)!r} exists and is not a folder: pass a folder to extract {archive} into")
    try:
        opener = zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise ValueError(f"{archive} is damaged ({error}): delete it and fetch it again") from error
    with opener as handle:
        try:
            listed = _zip_members(archive, handle) if kind == "zip" else _tar_members(archive, handle)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise ValueError(f"{archive} is damaged ({error}): delete it and fetch it again") from error
        listed = _select(archive, listed, members)
        _check_layout(archive, listed)
        files = [m for m in listed if not m.is_dir]
        packed = sum(m.packed for m in files) if kind == "zip" else archive.stat().st_size
        _check_limits(archive, files, packed, max_bytes, max_ratio)
        if dest.exists():
            _check_dest(archive, dest, [m for m in listed if m.parts])
        _write_members(archive, dest, listed)
    return [dest.joinpath(*m.parts) for m in listed if not m.is_dir and m.parts]
