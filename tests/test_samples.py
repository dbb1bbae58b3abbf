"""The sample manifest and fetch_sample(): cache, mirror folder, mirror URL, quick mode, pinned URL, and rows
whose checksum is recorded on first use (trusted once, checked on every later use)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from localserver import Route
from PIL import Image

from nstlib import config
from nstlib.data import samples
from nstlib.data.download import DownloadError

ROOT = Path(__file__).resolve().parent.parent

SEED_FIRST_USE = ["old_canal_port", "lisa_gherardini", "water_lilies_1916"]
"""The three of the seed's seven styles pinned to Wikimedia Commons, whose checksum is recorded on first use."""

EXPECTED_NAMES = {
    "style": ["starry_night", "the_scream", "wave", "udnie", "mosaic", "candy", "rain_princess", *SEED_FIRST_USE],
    "content": ["tubingen", "golden_gate", "amber"],
}

BODY = b"\xff\xd8\xff\xe0 not really a jpeg, but bytes with a known digest " * 200
BODY_SHA = hashlib.sha256(BODY).hexdigest()


def _test_sample(url="https://example.invalid/style/test.jpg", **changes) -> samples.Sample:
    fields = dict(name="test_style", kind="style", file="style/test.jpg", title="Test Swirls", artist="unknown",
                  year=None, rights="made for the tests", url=url, sha256=BODY_SHA, bytes=len(BODY),
                  width=300, height=200)
    fields.update(changes)
    return samples.Sample(**fields)


@pytest.fixture
def test_sample(monkeypatch, http_server):
    """A manifest entry whose pinned URL is the local server (which serves BODY there)."""
    url = http_server.add("/pinned/test.jpg", BODY)
    sample = _test_sample(url=url)
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    return sample


# -- the manifest ---------------------------------------------------------------------------------

def test_manifest_is_consistent():
    assert samples.sample_names("style") == EXPECTED_NAMES["style"]
    assert samples.sample_names("content") == EXPECTED_NAMES["content"]
    assert samples.sample_names() == list(samples.SAMPLES)
    assert sorted(samples.sample_names()) == sorted(EXPECTED_NAMES["style"] + EXPECTED_NAMES["content"])
    for name, s in samples.SAMPLES.items():
        assert s.name == name
        assert s.file.startswith(s.kind + "/") and s.file.endswith(".jpg")
        assert s.title and s.artist and s.rights
        assert s.year is None or re.fullmatch(r"(c\. )?1[0-9]{3}", s.year)
        if name in SEED_FIRST_USE:  # Wikimedia Commons originals: public domain, checksum recorded on first use
            assert s.url.startswith("https://upload.wikimedia.org/wikipedia/commons/") and s.url.endswith(".jpg")
            assert s.sha256 is None and s.bytes is None and "public domain" in s.rights
            file_name = urllib.parse.unquote(s.url.rsplit("/", 1)[1])
            digest = hashlib.md5(file_name.encode()).hexdigest()  # Commons stores File:X under /<d[0]>/<d[:2]>/X
            assert s.url.split("/commons/", 1)[1].startswith(f"{digest[0]}/{digest[:2]}/")
            continue
        assert s.url.startswith("https://") and s.url.rsplit("/", 1)[1] == s.file.rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{64}", s.sha256)
        assert s.bytes > 10_000 and s.width >= 256 and s.height >= 256
    pinned = [s for s in samples.SAMPLES.values() if s.sha256 is not None]
    assert len({s.sha256 for s in pinned}) == len(pinned) == len(samples.SAMPLES) - len(SEED_FIRST_USE)
    assert len({s.file for s in samples.SAMPLES.values()}) == len(samples.SAMPLES)


def test_shipped_manifest_read_a_second_way():
    # the shipped file split by hand (no csv module, no load_manifest): the same rows, fields and types
    lines = (ROOT / "data" / "images.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == list(samples.MANIFEST_COLUMNS)
    rows = [dict(zip(samples.MANIFEST_COLUMNS, line.split("\t"))) for line in lines[1:] if line.strip()]
    assert [row["name"] for row in rows] == list(samples.SAMPLES)
    for row in rows:
        s = samples.SAMPLES[row["name"]]
        assert (s.kind, s.file, s.title, s.artist, s.rights, s.url) == (
            row["kind"], row["file"], row["title"], row["artist"], row["rights"], row["url"])
        assert s.sha256 == (None if row["sha256"] == "first-use" else row["sha256"])
        assert s.year == (row["year"] or None)
        assert (s.bytes, s.width, s.height) == tuple(int(row[c]) if row[c] else None for c in ("bytes", "width", "height"))


def test_load_manifest_round_trip_and_line_endings(tmp_path):
    # every shipped sample written out by hand, read back by load_manifest: nothing lost, order kept
    header = "\t".join(samples.MANIFEST_COLUMNS)
    def field(s, c):
        value = getattr(s, c)
        return samples.FIRST_USE if c == "sha256" and value is None else "" if value is None else str(value)

    body = ["\t".join(field(s, c) for c in samples.MANIFEST_COLUMNS) for s in reversed(list(samples.SAMPLES.values()))]
    path = tmp_path / "copy.tsv"
    path.write_bytes(("\r\n".join([header] + body) + "\r\n").encode("utf-8"))  # Windows line endings
    loaded = samples.load_manifest(path)
    assert list(loaded) == list(reversed(samples.SAMPLES))
    assert loaded == samples.SAMPLES
    # one changed value is read as changed, and a bad one is refused with its row
    wave = next(line for line in body if line.startswith("wave\t"))
    path.write_text("\n".join([header, wave.replace("\tstyle\t", "\tcontent\t", 1)]) + "\n", encoding="utf-8")
    (only,) = samples.load_manifest(path).values()
    assert only == dataclasses.replace(samples.SAMPLES["wave"], kind="content")
    path.write_text("\n".join([header, body[0], body[1].replace(".jpg", ".jpg\textra", 1)]) + "\n", encoding="utf-8")
    with pytest.raises(samples.ManifestError, match=r"row 3 .*13 fields, expected 12"):
        samples.load_manifest(path)


def test_credit():
    starry = samples.get_sample("starry_night").credit
    assert starry == "The Starry Night, Vincent van Gogh (1889) — public domain painting"
    wave = samples.get_sample("wave").credit
    assert wave.startswith("The Great Wave off Kanagawa, Katsushika Hokusai (c. 1831) — ")
    undated = _test_sample()
    assert undated.credit == "Test Swirls, unknown — made for the tests"


def test_get_sample_aliases_and_errors():
    princess = samples.SAMPLES["rain_princess"]
    for alias in ("rain_princess", "rain-princess", "Rain-Princess", "  RAIN_PRINCESS "):
        assert samples.get_sample(alias) is princess
        assert samples.is_sample(alias)
    assert samples.get_sample(princess) is princess
    with pytest.raises(ValueError) as info:
        samples.get_sample("mona_lisa")
    for name in samples.SAMPLES:
        assert name in str(info.value)
    assert not samples.is_sample("mona_lisa") and not samples.is_sample(None)
    with pytest.raises(ValueError, match="kind"):
        samples.sample_names("painting")


def test_sample_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        samples.SAMPLES["wave"].url = "https://elsewhere/"


def _manifest_text(**changes) -> str:
    header = "\t".join(samples.MANIFEST_COLUMNS)
    row = dict(name="good", kind="style", file="style/good.jpg", title="T", artist="A", year="", rights="R",
               url="https://example.com/good.jpg", sha256="a" * 64, bytes="10", width="4", height="3")
    row.update(changes)
    return header + "\n" + "\t".join(row[c] for c in samples.MANIFEST_COLUMNS) + "\n"


def test_load_manifest_accepts_a_good_file(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text(_manifest_text() + "\n", encoding="utf-8")  # a trailing blank line is ignored
    (only,) = samples.load_manifest(path).values()
    assert only == samples.Sample("good", "style", "style/good.jpg", "T", "A", None, "R",
                                  "https://example.com/good.jpg", "a" * 64, 10, 4, 3)


@pytest.mark.parametrize("change, problem", [
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": "A" * 64}, "sha256"),
    ({"url": "http://example.com/good.jpg"}, "https"),
    ({"kind": "painting"}, "kind"),
    ({"file": "../escape.jpg"}, "relative path"),
    ({"file": "/etc/passwd"}, "relative path"),
    ({"bytes": "ten"}, "bytes"),
    ({"width": "0"}, "width"),
    ({"name": "Bad Name"}, "name"),
    ({"rights": ""}, "rights"),
])
def test_load_manifest_names_the_bad_row(tmp_path, change, problem):
    path = tmp_path / "m.tsv"
    path.write_text(_manifest_text(**change), encoding="utf-8")
    with pytest.raises(samples.ManifestError) as info:
        samples.load_manifest(path)
    message = str(info.value)
    assert str(path) in message and "row 2" in message and problem in message


def test_load_manifest_structure_errors(tmp_path):
    path = tmp_path / "m.tsv"
    text = _manifest_text()
    path.write_text(text + text.splitlines()[1] + "\n", encoding="utf-8")
    with pytest.raises(samples.ManifestError, match=r"row 3 \('good'\): repeats a name"):
        samples.load_manifest(path)
    path.write_text("name\tkind\n", encoding="utf-8")
    with pytest.raises(samples.ManifestError, match="header"):
        samples.load_manifest(path)
    path.write_text(text.splitlines()[0] + "\ngood\tstyle\n", encoding="utf-8")
    with pytest.raises(samples.ManifestError, match="row 2.*2 fields, expected 12"):
        samples.load_manifest(path)
    with pytest.raises(samples.ManifestError, match="cannot read"):
        samples.load_manifest(tmp_path / "missing.tsv")


# -- fetch_sample -------------------------------------------------------------------------------

def test_fetch_from_the_pinned_url_then_from_the_cache(test_sample, http_server, cache_dir):
    path = samples.fetch_sample("test-style", progress=False)
    assert path == cache_dir / "images" / "style" / "test.jpg"
    assert path.read_bytes() == BODY
    assert http_server.count("/pinned/test.jpg") == 1
    # a second call is a cache hit: no request at all
    assert samples.fetch_sample("test_style", progress=False) == path
    assert http_server.count() == 1


def test_corrupted_cache_file_is_fetched_again(test_sample, http_server, cache_dir):
    cached = cache_dir / "images" / test_sample.file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BODY[:-1] + b"!")
    assert samples.fetch_sample("test_style", progress=False).read_bytes() == BODY
    assert http_server.count("/pinned/test.jpg") == 1


def test_pinned_url_with_wrong_checksum_raises_and_caches_nothing(monkeypatch, http_server, cache_dir):
    url = http_server.add("/pinned/changed.jpg", BODY + b"changed upstream")
    sample = _test_sample(url=url, bytes=len(BODY) + 16)
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        samples.fetch_sample("test_style", progress=False)
    assert not (cache_dir / "images" / sample.file).exists()
    assert not (cache_dir / "images" / (sample.file + ".part")).exists()


def test_mirror_folder(test_sample, cache_dir, tmp_path, monkeypatch, no_network):
    mirror = tmp_path / "mirror"
    (mirror / "style").mkdir(parents=True)
    (mirror / "style" / "test.jpg").write_bytes(BODY)
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror))
    path = samples.fetch_sample("test_style", progress=False)
    assert path == cache_dir / "images" / "style" / "test.jpg"
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in path.parent.iterdir()) == ["test.jpg"]  # no temporary file left


def test_mirror_folder_with_a_wrong_file(test_sample, cache_dir, tmp_path, monkeypatch, no_network):
    mirror = tmp_path / "mirror"
    (mirror / "style").mkdir(parents=True)
    bad = mirror / "style" / "test.jpg"
    bad.write_bytes(BODY + b"!")
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror))
    with pytest.raises(DownloadError) as info:
        samples.fetch_sample("test_style", progress=False)
    message = str(info.value)
    assert str(bad) in message and BODY_SHA in message and hashlib.sha256(BODY + b"!").hexdigest() in message
    folder = cache_dir / "images" / "style"
    assert not folder.exists() or not list(folder.iterdir())


def test_mirror_folder_without_the_file_falls_through(test_sample, http_server, cache_dir, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror))
    assert samples.fetch_sample("test_style", progress=False).read_bytes() == BODY
    assert http_server.count("/pinned/test.jpg") == 1


def test_mirror_that_is_not_a_folder(test_sample, cache_dir, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("NSTLIB_MIRROR", str(tmp_path / "no-such-folder"))
    with pytest.raises(FileNotFoundError, match="NSTLIB_MIRROR"):
        samples.fetch_sample("test_style", progress=False)


def test_mirror_base_url(test_sample, http_server, cache_dir, monkeypatch):
    http_server.add("/mirror/style/test.jpg", BODY)
    monkeypatch.setenv("NSTLIB_MIRROR", http_server.url("/mirror/"))
    assert samples.fetch_sample("test_style", progress=False).read_bytes() == BODY
    assert http_server.count("/mirror/style/test.jpg") == 1
    assert http_server.count("/pinned/test.jpg") == 0


def test_mirror_base_url_with_a_wrong_file(test_sample, http_server, cache_dir, monkeypatch):
    http_server.add("/mirror/style/test.jpg", Route(body=BODY[::-1]))
    monkeypatch.setenv("NSTLIB_MIRROR", http_server.base_url + "/mirror")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        samples.fetch_sample("test_style", progress=False)
    assert http_server.count("/pinned/test.jpg") == 0


def test_quick_mode_makes_a_standin_without_network(test_sample, cache_dir, monkeypatch, capsys, no_network):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    path = samples.fetch_sample("test_style")
    assert path == cache_dir / "standins" / "test_style.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (256, 171)  # 300 x 200 scaled to a longer side of 256
        pixels = np.asarray(image)
    assert np.array_equal(pixels, np.asarray(samples.standin(test_sample)))
    assert samples.fetch_sample("test_style") == path
    content = samples.fetch_sample("tubingen")
    assert content == cache_dir / "standins" / "tubingen.png"
    assert capsys.readouterr().out.count(config.BANNER) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_style.png", "tubingen.png"]


def test_quick_mode_prefers_a_real_cached_image(test_sample, cache_dir, monkeypatch, capsys, no_network):
    cached = cache_dir / "images" / test_sample.file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BODY)
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert samples.fetch_sample("test_style") == cached
    assert capsys.readouterr().out == ""  # nothing was replaced, so no banner


def test_without_quick_mode_a_failure_is_an_error_not_a_standin(monkeypatch, http_server, cache_dir):
    sample = _test_sample(url=http_server.url("/pinned/missing.jpg"))
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    with pytest.raises(DownloadError, match="404"):
        samples.fetch_sample("test_style", progress=False)
    assert not (cache_dir / "standins").exists()


def test_offline_download_error_gives_the_same_hints_as_the_weights(monkeypatch, cache_dir):
    """Offline (a refused local port), a sample's error names every way out, as the VGG19 and the
    pretrained-model errors do: the proxy, the file placed by hand (where), the mirror, quick mode."""
    import functools
    import socket

    from nstlib.data import download as downloads

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sample = _test_sample(url=f"http://127.0.0.1:{port}/style/test.jpg")
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    monkeypatch.setattr(samples, "download", functools.partial(downloads.download, backoff=0.0))  # no waits
    with pytest.raises(DownloadError) as info:
        samples.fetch_sample("test_style", progress=False)
    error = info.value
    message = " ".join(str(error).split())
    cached = cache_dir / "images" / "style" / "test.jpg"
    assert error.url == sample.url and "could not connect" in error.reason
    for hint in ("check the internet connection", "Are you offline, or behind a proxy (set HTTPS_PROXY)?",
                 f"download {sample.url} on a machine with internet access and place it at {cached}",
                 "NSTLIB_CACHE moves that folder", "set NSTLIB_MIRROR to a folder or URL that holds style/test.jpg",
                 "For an offline smoke test of the course set NSTLIB_QUICK=1"):
        assert hint in message, hint
    assert not cached.exists()


# -- trust on first use -------------------------------------------------------------------------

def _png(color, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


FIRST = _png((200, 30, 30))
CHANGED = _png((30, 30, 200))


def _first_use_sample(url: str) -> samples.Sample:
    return _test_sample(url=url, name="first_use", file="style/first_use.png", sha256=None, bytes=None, width=None,
                        height=None)


@pytest.fixture
def first_use(monkeypatch, http_server, cache_dir):
    """A first-use row whose URL is the local server (which serves FIRST there)."""
    sample = _first_use_sample(http_server.add("/commons/first_use.png", FIRST))
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    return sample


def test_manifest_accepts_first_use_rows_with_sizes_to_record(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text(_manifest_text(sha256="first-use", bytes="", width="", height=""), encoding="utf-8")
    (only,) = samples.load_manifest(path).values()
    assert (only.sha256, only.bytes, only.width, only.height) == (None, None, None, None)
    path.write_text(_manifest_text(sha256="first-use", bytes="10", width="4", height="3"), encoding="utf-8")
    (known,) = samples.load_manifest(path).values()
    assert (known.sha256, known.bytes, known.width, known.height) == (None, 10, 4, 3)
    path.write_text(_manifest_text(sha256="first-use", bytes="ten"), encoding="utf-8")
    with pytest.raises(samples.ManifestError, match=r"bytes 'ten' must be a positive whole number \(or empty"):
        samples.load_manifest(path)
    path.write_text(_manifest_text(bytes=""), encoding="utf-8")  # a pinned row still needs its size
    with pytest.raises(samples.ManifestError, match="bytes '' must be a positive whole number"):
        samples.load_manifest(path)
    path.write_text(_manifest_text(sha256="later"), encoding="utf-8")
    with pytest.raises(samples.ManifestError, match="or first-use"):
        samples.load_manifest(path)
    assert samples.standin_size(only, 64) == (64, 64)  # no pixel size yet: a square stand-in


def test_first_use_records_the_file_then_checks_every_later_use(first_use, http_server, cache_dir):
    assert not samples.is_available(first_use)
    path = samples.fetch_sample("first_use", progress=False)
    assert path == cache_dir / "images" / "style" / "first_use.png" and path.read_bytes() == FIRST
    record = json.loads(samples.record_path(first_use).read_text())
    assert record["sha256"] == hashlib.sha256(FIRST).hexdigest() and record["bytes"] == len(FIRST)
    assert (record["width"], record["height"]) == (40, 30) and record["url"] == first_use.url
    assert samples.recorded("first_use") == record and samples.is_available("first_use")
    assert samples.fetch_sample("first_use", progress=False) == path  # a cache hit, checked against the record
    assert http_server.count("/commons/first_use.png") == 1
    # the cached copy is damaged: fetched again, and the same file passes the record's check
    path.write_bytes(FIRST[:-1] + b"!")
    assert not samples.is_available(first_use)
    assert samples.fetch_sample("first_use", progress=False).read_bytes() == FIRST
    assert http_server.count("/commons/first_use.png") == 2
    # upstream changed: refused, nothing cached, the record named with the way to accept the new file
    path.unlink()
    http_server.add("/commons/first_use.png", CHANGED)
    with pytest.raises(DownloadError) as info:
        samples.fetch_sample("first_use", progress=False)
    message = str(info.value)
    assert "sha256 mismatch" in message and hashlib.sha256(CHANGED).hexdigest() in message
    assert f"If you trust the new file, delete {samples.record_path(first_use)}" in message
    assert not path.exists() and json.loads(samples.record_path(first_use).read_text()) == record
    samples.record_path(first_use).unlink()  # the user accepts the new file
    assert samples.fetch_sample("first_use", progress=False).read_bytes() == CHANGED
    assert samples.recorded(first_use)["sha256"] == hashlib.sha256(CHANGED).hexdigest()


def test_first_use_of_a_mirror_copy_and_of_a_file_placed_by_hand(monkeypatch, cache_dir, tmp_path, no_network):
    sample = _first_use_sample("https://example.invalid/first_use.png")
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    mirror = tmp_path / "mirror"
    (mirror / "style").mkdir(parents=True)
    (mirror / "style" / "first_use.png").write_bytes(FIRST)
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror))
    assert samples.is_available(sample)  # a mirror folder holds it: no network needed
    assert samples.fetch_sample("first_use", progress=False).read_bytes() == FIRST
    assert samples.recorded(sample)["source"] == str(mirror)
    cached = cache_dir / "images" / "style" / "first_use.png"
    cached.unlink()
    (mirror / "style" / "first_use.png").write_bytes(CHANGED)  # a different mirror copy is refused
    with pytest.raises(DownloadError, match=hashlib.sha256(FIRST).hexdigest()):
        samples.fetch_sample("first_use", progress=False)
    monkeypatch.delenv("NSTLIB_MIRROR")
    samples.record_path(sample).unlink()
    cached.write_bytes(CHANGED)  # placed by hand, no record yet: trusted and recorded, without the network
    assert samples.fetch_sample("first_use", progress=False) == cached
    assert samples.recorded(sample)["sha256"] == hashlib.sha256(CHANGED).hexdigest()
    samples.record_path(sample).write_text("{not json", encoding="utf-8")
    with pytest.raises(DownloadError, match="(?s)record is damaged.*Fix: delete"):
        samples.fetch_sample("first_use", progress=False)


def test_first_use_refuses_a_file_that_is_not_an_image(monkeypatch, http_server, cache_dir):
    sample = _first_use_sample(http_server.add("/commons/broken.png", b"\x89PNG but not really an image" * 10))
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    with pytest.raises(DownloadError, match="not a readable image"):
        samples.fetch_sample("first_use", progress=False)
    assert not (cache_dir / "images" / sample.file).exists() and samples.recorded(sample) is None


def test_quick_mode_never_downloads_a_first_use_row(first_use, http_server, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    path = samples.fetch_sample("first_use")
    assert path == cache_dir / "standins" / "first_use.png" and http_server.count() == 0
    with Image.open(path) as image:
        assert image.size[0] == image.size[1]  # square: the pixel size is not known before first use
    assert samples.recorded(first_use) is None


def test_availability_note_says_which_images_are_real(test_sample, cache_dir, monkeypatch, no_network):
    monkeypatch.setattr(samples, "SAMPLES", {test_sample.name: test_sample, "tubingen": samples.get_sample("tubingen")})
    assert samples.availability_note() == "Sample images: none of the 2 is cached, so all are synthetic stand-ins."
    cached = cache_dir / "images" / test_sample.file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BODY)
    assert samples.availability_note() == ("Sample images: 1 of 2 are the real images, from the cache (test_style); "
                                           "the other 1 are synthetic stand-ins.")
    cached.write_bytes(BODY + b"!")  # a copy that fails its check is not real
    assert samples.availability_note().startswith("Sample images: none of the 2")
