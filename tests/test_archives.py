"""safe_extract: exact round trips, and malicious archives refused before anything is written."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from nstlib.data.archives import archive_kind, archive_members, safe_extract

FILES = {
    "readme.txt": b"hello\n",
    "models/a.bin": bytes(range(256)) * 40,
    "models/deep/b.bin": b"\x00\xff" * 5000,
}


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (files, folders, links), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def make_zip(path: Path, entries) -> Path:
    """entries: (name, data) for files, or (ZipInfo, data)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def zip_symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def make_tar(path: Path, members, mode: str = "w") -> Path:
    """members: (TarInfo, data or None)."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def tar_file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def tar_link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture
def world(tmp_path):
    """An 'outside' folder that must stay untouched, a folder for archives, and the destination path."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"original")
    archives = tmp_path / "archives"
    archives.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return outside, archives, work / "dest"


# ---- normal archives ---------------------------------------------------------------------------------------

def test_zip_round_trip_exact_bytes(world):
    outside, archives, dest = world
    archive = make_zip(archives / "ok.zip", [("models/", b"")] + list(FILES.items()))
    paths = safe_extract(archive, dest)
    assert paths == [dest / name for name in FILES]
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert tree(dest) == sorted(["readme.txt", "models", "models/a.bin", "models/deep", "models/deep/b.bin"])
    assert tree(dest.parent) == ["dest"] + [f"dest/{p}" for p in tree(dest)]  # no temporary folder left


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_tar_round_trip_exact_bytes(world, suffix, mode):
    outside, archives, dest = world
    folder = tarfile.TarInfo("./models")
    folder.type = tarfile.DIRTYPE
    members = [(folder, None)] + [(tar_file("./" + name), data) for name, data in FILES.items()]
    archive = make_tar(archives / f"ok{suffix}", members, mode)
    assert archive_kind(archive) == "tar"
    assert archive_members(archive) == ["./models"] + ["./" + name for name in FILES]
    paths = safe_extract(archive, dest)
    assert paths == [dest / name for name in FILES]
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data


def test_members_subset_and_merge_into_existing_dest(world):
    outside, archives, dest = world
    archive = make_zip(archives / "ok.zip", list(FILES.items()))
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"keep")
    (dest / "readme.txt").write_bytes(b"old")
    paths = safe_extract(archive, dest, members=["readme.txt", "models/deep/b.bin"])
    assert paths == [dest / "readme.txt", dest / "models/deep/b.bin"]
    assert (dest / "readme.txt").read_bytes() == FILES["readme.txt"]  # replaced
    assert (dest / "keep.txt").read_bytes() == b"keep"  # untouched
    assert not (dest / "models/a.bin").exists()
    assert tree(dest.parent) == ["dest"] + [f"dest/{p}" for p in tree(dest)]
    with pytest.raises(ValueError, match="no member"):
        safe_extract(archive, dest, members=["missing.txt"])


def test_archive_kind_detects_wrong_content(world, tmp_path):
    outside, archives, dest = world
    fake = archives / "saved_models.zip"
    fake.write_bytes(b"<!DOCTYPE html><html>login</html>")
    with pytest.raises(ValueError, match=r"saved_models\.zip is named like a zip archive but is not one.*DOCTYPE"):
        safe_extract(fake, dest)
    assert not dest.exists()
    unnamed = make_zip(archives / "download", [("a.txt", b"a")])
    assert archive_kind(unnamed) == "zip"
    with pytest.raises(FileNotFoundError, match="nothing.zip"):
        archive_kind(archives / "nothing.zip")
    other = archives / "notes.bin"
    other.write_bytes(b"just bytes")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        archive_kind(other)


# ---- malicious zips ----------------------------------------------------------------------------------------

def _assert_refused(archive: Path, dest: Path, outside: Path, member: str):
    before = tree(dest.parent.parent)
    with pytest.raises(ValueError) as info:
        safe_extract(archive, dest)
    message = str(info.value)
    assert str(archive) in message and repr(member) in message
    assert tree(dest.parent.parent) == before  # nothing written anywhere, not even dest
    assert not dest.exists()
    assert (outside / "victim.txt").read_bytes() == b"original"
    assert tree(outside) == ["victim.txt"]


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested_dotdot", "backslash", "drive"])
def test_zip_escaping_names_are_refused(world, kind):
    outside, archives, dest = world
    name = {
        "absolute": str(outside / "victim.txt"),
        "dotdot": "../../outside/victim.txt",
        "nested_dotdot": "models/../../../outside/victim.txt",
        "backslash": "..\\..\\outside\\victim.txt",
        "drive": "C:/outside/victim.txt",
    }[kind]
    # a harmless member first: validation must happen before anything is written
    archive = make_zip(archives / f"{kind}.zip", [("first.txt", b"first"), (name, b"pwned")])
    assert name in archive_members(archive)  # zipfile kept the hostile name as is
    _assert_refused(archive, dest, outside, name)


def test_zip_symlink_is_refused(world):
    outside, archives, dest = world
    archive = make_zip(archives / "link.zip", [("first.txt", b"first"), (zip_symlink("etc", "/etc"), b"/etc"),
                                               ("etc/passwd", b"pwned")])
    _assert_refused(archive, dest, outside, "etc")


def test_zip_duplicate_and_file_as_folder_are_refused(world):
    outside, archives, dest = world
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = make_zip(archives / "dup.zip", [("a.txt", b"one"), ("a.txt", b"two")])
    _assert_refused(dup, dest, outside, "a.txt")
    clash = make_zip(archives / "clash.zip", [("a", b"file"), ("a/b.txt", b"below a file")])
    _assert_refused(clash, dest, outside, "a/b.txt")


def test_damaged_zip_leaves_nothing(world):
    outside, archives, dest = world
    archive = archives / "bad.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("good.txt", b"good data")
        zf.writestr("bad.txt", b"B" * 1000)
    data = bytearray(archive.read_bytes())
    at = data.index(b"B" * 1000)
    data[at + 500] ^= 0xFF  # corrupt the second file's bytes: its CRC check fails while extracting
    archive.write_bytes(bytes(data))
    before = tree(dest.parent)
    with pytest.raises(ValueError, match=r"bad\.zip is damaged"):
        safe_extract(archive, dest)
    assert tree(dest.parent) == before == []  # the already written good.txt went with the temporary folder


def test_existing_symlink_in_dest_is_not_followed(world):
    outside, archives, dest = world
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    archive = make_zip(archives / "ok.zip", [("sub/victim.txt", b"pwned")])
    with pytest.raises(ValueError, match="symbolic link inside the destination"):
        safe_extract(archive, dest)
    assert (outside / "victim.txt").read_bytes() == b"original"
    assert tree(dest.parent) == ["dest", "dest/sub"]


# ---- malicious tars ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "symlink_inside", "hardlink", "device", "fifo"])
def test_tar_unsafe_members_are_refused(world, kind):
    outside, archives, dest = world
    members = [(tar_file("first.txt"), b"first")]
    if kind == "absolute":
        bad = str(outside / "victim.txt")
        members.append((tar_file(bad), b"pwned"))
    elif kind == "dotdot":
        bad = "../../outside/victim.txt"
        members.append((tar_file(bad), b"pwned"))
    elif kind == "symlink":
        bad = "etc"
        members += [(tar_link(bad, "/etc", tarfile.SYMTYPE), None), (tar_file("etc/passwd"), b"pwned")]
    elif kind == "symlink_inside":  # even a link that stays inside dest is refused
        bad = "alias.txt"
        members.append((tar_link(bad, "first.txt", tarfile.SYMTYPE), None))
    elif kind == "hardlink":
        bad = "passwd"
        members.append((tar_link(bad, "/etc/passwd", tarfile.LNKTYPE), None))
    elif kind == "device":
        bad = "null"
        info = tar_file(bad)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        members.append((info, None))
    else:
        bad = "pipe"
        info = tar_file(bad)
        info.type = tarfile.FIFOTYPE
        members.append((info, None))
    archive = make_tar(archives / f"{kind}.tar.gz", members, "w:gz")
    _assert_refused(archive, dest, outside, bad)


# ---- decompression bombs -----------------------------------------------------------------------------------

ZEROS_MB = 5  # 5 MB of zeros deflate to about 5 KB: a 1000-fold bomb, past RATIO_GRACE_BYTES, that costs little


def zeros_zip(path: Path, name: str = "zeros.bin", mb: int = ZEROS_MB, extra=()) -> Path:
    """A zip whose member ``name`` is ``mb`` MB of zeros, streamed (never ``mb`` MB in memory); then ``extra``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w") as out:
            for _ in range(mb):
                out.write(bytes(10**6))
        for member, data in extra:
            zf.writestr(member, data)
    return path


class _Zeros(io.RawIOBase):
    """A readable stream of ``n`` zero bytes."""

    def __init__(self, n: int):
        self.left = n

    def readable(self):
        return True

    def readinto(self, buffer):
        k = min(len(buffer), self.left)
        buffer[:k] = bytes(k)
        self.left -= k
        return k


def zeros_tar_gz(path: Path, mb: int = ZEROS_MB) -> Path:
    info = tar_file("zeros.bin")
    info.size = mb * 10**6
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(info, io.BufferedReader(_Zeros(info.size)))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_bomb_is_refused_by_its_ratio_before_writing(world, kind):
    outside, archives, dest = world
    archive = archives / f"bomb.{kind}"
    zeros_zip(archive) if kind == "zip" else zeros_tar_gz(archive)
    packed = archive.stat().st_size
    assert ZEROS_MB * 10**6 > 500 * packed  # the oracle: a ratio far beyond any real dataset's
    before = tree(dest.parent.parent)
    with pytest.raises(ValueError) as info:
        safe_extract(archive, dest)  # the default limits
    message = str(info.value)
    assert str(archive) in message and "max_ratio=100" in message and f"{ZEROS_MB * 10**6:,}" in message
    assert "Nothing was extracted" in message
    assert tree(dest.parent.parent) == before and not dest.exists()  # no temporary folder either
    # the same archive is accepted when the caller says it expects such a ratio
    (path,) = safe_extract(archive, dest, max_ratio=None)
    assert path.stat().st_size == ZEROS_MB * 10**6


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_declared_total_over_max_bytes_is_refused_before_writing(world, kind):
    outside, archives, dest = world
    files = {"a.bin": bytes(range(256)) * 40, "b/c.bin": b"c" * 7000, "d.txt": b"d"}  # 17,241 bytes
    total = sum(len(data) for data in files.values())
    if kind == "zip":
        archive = make_zip(archives / "three.zip", files.items())
    else:
        archive = make_tar(archives / "three.tar", [(tar_file(name), data) for name, data in files.items()])
    before = tree(dest.parent.parent)
    with pytest.raises(ValueError) as info:
        safe_extract(archive, dest, max_bytes=total - 1)
    message = str(info.value)
    assert str(archive) in message and f"{total:,} bytes" in message and f"max_bytes={total - 1:,}" in message
    assert tree(dest.parent.parent) == before and not dest.exists()
    # exactly at the limit is allowed; a subset is measured alone
    assert len(safe_extract(archive, dest, max_bytes=total)) == 3
    assert (dest / "b" / "c.bin").read_bytes() == files["b/c.bin"]
    other = dest.parent / "subset"
    assert safe_extract(archive, other, members=["d.txt"], max_bytes=1) == [other / "d.txt"]


def test_limits_apply_to_the_chosen_members_only(world):
    outside, archives, dest = world
    archive = zeros_zip(archives / "mixed.zip", extra=[("small.txt", b"small")])
    assert safe_extract(archive, dest, members=["small.txt"], max_bytes=10) == [dest / "small.txt"]
    assert (dest / "small.txt").read_bytes() == b"small"


def _lie_about_size(archive: Path, declared: int) -> None:
    """Patch the uncompressed size in the zip's local header and central directory (one member)."""
    data = bytearray(archive.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = declared.to_bytes(4, "little")
    data[central + 24:central + 28] = declared.to_bytes(4, "little")
    archive.write_bytes(bytes(data))


def test_zip_member_larger_than_declared_stops_while_writing(world):
    outside, archives, dest = world
    archive = zeros_zip(archives / "liar.zip", mb=5)
    _lie_about_size(archive, 1000)  # declares 1,000 bytes; the deflate stream gives 5,000,000
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros.bin").file_size == 1000  # the small size passes every check made before writing
    before = tree(dest.parent.parent)
    with pytest.raises(ValueError) as info:
        safe_extract(archive, dest)
    message = str(info.value)
    assert str(archive) in message and "'zeros.bin'" in message
    assert "more than the 1,000 bytes its header declares" in message and "stopped after writing 1,000 bytes" in message
    assert tree(dest.parent.parent) == before and not dest.exists()  # the partial file went with the temporary folder
    # a header declaring more than the stream holds is refused too (the ratio check is off to get that far)
    _lie_about_size(archive, 6_000_000)
    with pytest.raises(ValueError, match=r"'zeros\.bin' holds only 5,000,000 of the 6,000,000 bytes"):
        safe_extract(archive, dest, max_ratio=None)
    assert tree(dest.parent.parent) == before and not dest.exists()


def test_tar_member_shorter_in_its_header_than_its_data_is_written_at_the_declared_size(world):
    outside, archives, dest = world
    data = bytes(range(256)) * 20  # 5,120 bytes follow the header, which says 1,000
    header = tar_file("short.bin")
    header.size = 1000
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(1024)
    archive = archives / "short.tar"
    archive.write_bytes(raw)
    assert safe_extract(archive, dest) == [dest / "short.bin"]
    assert (dest / "short.bin").read_bytes() == data[:1000]  # the stream past the declared size is never written
    assert tree(dest) == ["short.bin"]


def test_limit_arguments_are_checked(world):
    outside, archives, dest = world
    archive = make_zip(archives / "ok.zip", FILES.items())
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(ValueError, match="max_bytes"):
            safe_extract(archive, dest, max_bytes=bad)
    for bad in (0, 0.5, -1, "big", float("inf")):
        with pytest.raises(ValueError, match="max_ratio"):
            safe_extract(archive, dest, max_ratio=bad)
    assert not dest.exists()
