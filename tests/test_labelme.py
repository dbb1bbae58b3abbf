"""The LabelMe crawler against a fake Apache directory listing on a local server."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time

import numpy as np
import pytest
from localserver import Route
from PIL import Image

from nstlib import config
from nstlib.data import labelme
from nstlib.data.labelme import CrawlError, download_labelme, parse_listing, read_manifest, safe_name

EVIL = "..%2F..%2Fevil.jpg"


@pytest.fixture(autouse=True)
def _not_quick(monkeypatch):
    """Real mode unless a test turns quick mode on (a caller's NSTLIB_QUICK=1 must not leak in)."""
    monkeypatch.delenv(config.ENV_QUICK, raising=False)


def jpeg(seed: int, size=(24, 16)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def listing(title: str, hrefs: list[str]) -> bytes:
    """An Apache-style 'Index of' page (sort links and a parent link first, like Apache)."""
    rows = "".join(f'<tr><td><a href="{h}">{h}</a></td><td align="right">2009-01-01 12:00</td></tr>\n'
                   for h in hrefs)
    return (f'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html><head><title>Index of {title}'
            f'</title></head><body><h1>Index of {title}</h1><table>'
            '<tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>'
            f'<tr><td><a href="../">Parent Directory</a></td></tr>\n{rows}</table></body></html>').encode()


def html(body: bytes) -> Route:
    return Route(body=body, content_type="text/html; charset=utf-8")


# a1 a2 a3(corrupt) | b1 b2 b3 | c1 ; sorted order of the good ones: a1 a2 b1 b2 b3 c1
IMAGES = {
    ("a_folder", "a1.jpg"): jpeg(1),
    ("a_folder", "a2.jpg"): jpeg(2),
    ("b_folder", "b1.jpg"): jpeg(3),
    ("b_folder", "b2.JPG"): jpeg(4),
    ("b_folder", "b3.jpeg"): jpeg(5),
    ("c_folder", "c1.jpg"): jpeg(6),
}
CORRUPT = ("a_folder", "a3.jpg")


@pytest.fixture
def site(http_server):
    """The fake LabelMe server; returns (server, base_url, served bytes per (folder, file))."""
    s = http_server
    s.add("/Images/", html(listing("/Images", [
        "c_folder/", "a_folder/", "b_folder/",          # unsorted on purpose
        "/", "http://evil.example/Images/x/",           # parent and foreign host
        "..%2Fescape/", "%2e%2e/", "sub/deeper/",       # escaping or nested folder names
        "readme.txt",                                    # a root-level file: ignored
    ])))
    s.add("/Images/a_folder/", html(listing("/Images/a_folder", [
        "a2.jpg", "a1.jpg", "a3.jpg", EVIL, "/Images/a_folder/../../evil2.jpg", "notes.txt", ".hidden.jpg"])))
    s.add("/Images/b_folder/", html(listing("/Images/b_folder", ["b3.jpeg", "b1.jpg", "b2.JPG"])))
    s.add("/Images/c_folder/", html(listing("/Images/c_folder", ["c1.jpg"])))
    for (folder, file), data in IMAGES.items():
        s.add(f"/Images/{folder}/{file}", Route(body=data, content_type="image/jpeg"))
    good = IMAGES[("a_folder", "a1.jpg")]
    s.add("/Images/a_folder/a3.jpg", Route(body=good[:200] + b"\x00" * 300, content_type="image/jpeg"))
    for path in (f"/Images/a_folder/{EVIL}", "/Images/evil.jpg", "/evil.jpg", "/evil2.jpg", "/Images/evil2.jpg"):
        s.add(path, Route(body=jpeg(99), content_type="image/jpeg"))
    return s, s.url("/Images/"), IMAGES


def image_gets(server) -> list[str]:
    return [r.path for r in server.requests if not r.path.endswith("/")]


def crawl(base_url, dest, n, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.0)
    kw.setdefault("retries", 0)
    return download_labelme(dest, n, base_url=base_url, **kw)


def test_parse_listing_keeps_only_safe_children():
    page = listing("/Images/x", ["b.jpg", "a.JPEG", "a.jpg", "a.jpg", "sub/", "sub/", "../", "/", "?C=S;O=A",
                                 "#top", "img.png", "http://other.host/Images/x/z.jpg", EVIL, "%2e%2e/",
                                 "dir/inner.jpg", "with%20space.jpg", "/Images/x/abs.jpg", "C:%5Cwin.jpg"])
    folders, images = parse_listing(page.decode(), "http://h.example/Images/x/")
    assert folders == ["sub"]
    assert images == ["a.JPEG", "a.jpg", "abs.jpg", "b.jpg", "with space.jpg"]


def test_safe_name():
    for bad in ["", ".", "..", "../x.jpg", "a/b.jpg", "a\\b.jpg", "c:x.jpg", ".hidden", "x\x00.jpg", "nul.jpg",
                "manifest.jsonl", "failed.json", "x" * 300, " lead.jpg", "trail."]:
        assert safe_name(bad) is None, bad
    for good in ["p1010736.jpg", "05june05_static_street_boston", "with space.jpg", "é.jpg"]:
        assert safe_name(good) == good


def test_fetches_first_n_good_images_in_sorted_order(site, tmp_path):
    server, base, served = site
    dest = tmp_path / "labelme"
    with pytest.warns(UserWarning, match=r"1 image\(s\) or listing\(s\) failed.*a_folder/a3.jpg"):
        assert crawl(base, dest, 5, workers=2) == dest
    expected = [("a_folder", "a1.jpg"), ("a_folder", "a2.jpg"), ("b_folder", "b1.jpg"), ("b_folder", "b2.JPG"),
                ("b_folder", "b3.jpeg")]
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert on_disk == sorted([f"{f}/{n}" for f, n in expected] + ["failed.json", "manifest.jsonl"])
    for key in expected:  # byte-identical to what the server sent
        assert (dest / key[0] / key[1]).read_bytes() == served[key]
    # the manifest: one line per image, sorted, with size and sha256 of the served bytes
    lines = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert [(e["folder"], e["file"]) for e in lines] == expected
    for e in lines:
        data = served[(e["folder"], e["file"])]
        assert e["bytes"] == len(data) and e["sha256"] == hashlib.sha256(data).hexdigest()
    assert set(read_manifest(dest)) == set(expected)
    # the corrupt image was fetched, failed to decode, was deleted and recorded
    failed = json.loads((dest / "failed.json").read_text())
    assert [(f["folder"], f["file"]) for f in failed] == [CORRUPT]
    assert "not a decodable image" in failed[0]["reason"]
    assert not (dest / "a_folder" / "a3.jpg").exists() and not (dest / "a_folder" / "a3.jpg.part").exists()
    # c1 is not needed; every request carried nstlib's User-Agent
    assert "/Images/c_folder/c1.jpg" not in image_gets(server)
    assert all(r.headers["user-agent"].startswith("nstlib/") for r in server.requests)


def test_malicious_names_never_requested_nor_written(site, tmp_path):
    server, base, _ = site
    dest = tmp_path / "deep" / "labelme"
    with pytest.warns(UserWarning):
        crawl(base, dest, 6)
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    assert not any("evil" in r.target or "escape" in r.target or "deeper" in r.target for r in server.requests)
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["a_folder", "b_folder", "c_folder"]
    assert not server.errors or all(isinstance(e, (BrokenPipeError, ConnectionResetError)) for e in server.errors)


def test_resume_fetches_only_what_is_missing(site, tmp_path):
    server, base, served = site
    dest = tmp_path / "labelme"
    with pytest.warns(UserWarning):
        crawl(base, dest, 3)  # a1 a2 (a3 fails) b1
    first = image_gets(server)
    assert sorted(first) == ["/Images/a_folder/a1.jpg", "/Images/a_folder/a2.jpg", "/Images/a_folder/a3.jpg",
                             "/Images/b_folder/b1.jpg"]
    # an interruption: b1 on disk but not recorded; a2 recorded but deleted
    entries = read_manifest(dest)
    del entries[("b_folder", "b1.jpg")]
    labelme._write_manifest(dest, entries)
    (dest / "a_folder" / "a2.jpg").unlink()
    with pytest.warns(UserWarning, match="a3.jpg"):
        crawl(base, dest, 6)
    again = image_gets(server)[len(first):]
    # a1 is present and recorded: no request; a2, b1 are fetched again; a3 is retried; the rest is new
    assert sorted(again) == ["/Images/a_folder/a2.jpg", "/Images/a_folder/a3.jpg", "/Images/b_folder/b1.jpg",
                             "/Images/b_folder/b2.JPG", "/Images/b_folder/b3.jpeg", "/Images/c_folder/c1.jpg"]
    assert len(read_manifest(dest)) == 6
    for (folder, file), data in served.items():
        assert (dest / folder / file).read_bytes() == data
    # everything present and recorded: no request at all
    before = len(server.requests)
    assert crawl(base, dest, 6) == dest
    assert crawl(base, dest, 2) == dest
    assert len(server.requests) == before


def test_concurrency_is_bounded_by_workers(http_server, tmp_path):
    server = http_server
    lock = threading.Lock()
    state = {"active": 0, "max": 0}

    def slow(body, content_type):
        def answer(request):
            with lock:
                state["active"] += 1
                state["max"] = max(state["max"], state["active"])
            time.sleep(0.08)
            with lock:
                state["active"] -= 1
            return Route(body=body, content_type=content_type)
        return answer

    names = [f"img{i:02d}.jpg" for i in range(10)]
    server.add("/Images/", slow(listing("/Images", ["f1/", "f2/"]), "text/html"))
    server.add("/Images/f1/", slow(listing("/Images/f1", names[:5]), "text/html"))
    server.add("/Images/f2/", slow(listing("/Images/f2", names[5:]), "text/html"))
    for i, name in enumerate(names):
        server.add(f"/Images/f{1 + i // 5}/{name}", slow(jpeg(i), "image/jpeg"))
    crawl(server.url("/Images/"), tmp_path / "lm", 10, workers=3)
    assert len(read_manifest(tmp_path / "lm")) == 10
    assert state["max"] <= 3
    assert state["max"] >= 2  # the downloads really overlapped


def test_arguments_are_checked(tmp_path):
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="workers="):
            download_labelme(tmp_path, 5, workers=bad)
    with pytest.raises(ValueError, match="n="):
        download_labelme(tmp_path, 0)
    with pytest.raises(ValueError, match="base_url="):
        download_labelme(tmp_path, 5, base_url="ftp://x/Images/")


def test_failures_leaving_too_few_images_raise(http_server, tmp_path):
    server = http_server
    server.add("/Images/", html(listing("/Images", ["f/", "g/"])))
    server.add("/Images/f/", html(listing("/Images/f", ["x1.jpg", "x2.jpg", "x3.jpg"])))  # all 404
    server.add("/Images/f/x1.jpg", Route(body=jpeg(1), content_type="image/jpeg"))
    # g/ has no route: its listing fails with 404 and is recorded, the crawl goes on
    dest = tmp_path / "lm"
    with pytest.raises(CrawlError, match=r"only 1 of n=4 .*404"):
        crawl(base_url=server.url("/Images/"), dest=dest, n=4)
    assert [e["file"] for e in read_manifest(dest).values()] == ["x1.jpg"]  # kept for a resume
    failed = json.loads((dest / "failed.json").read_text())
    assert {(f["folder"], f["file"]) for f in failed} == {("f", "x2.jpg"), ("f", "x3.jpg"), ("g", None)}


def test_fewer_images_than_n_listed_warns(http_server, tmp_path):
    server = http_server
    server.add("/Images/", html(listing("/Images", ["f/"])))
    server.add("/Images/f/", html(listing("/Images/f", ["x1.jpg"])))
    server.add("/Images/f/x1.jpg", Route(body=jpeg(1), content_type="image/jpeg"))
    with pytest.warns(UserWarning, match=r"listing holds only 1 usable image\(s\)"):
        crawl(server.url("/Images/"), tmp_path / "lm", 3)


def test_default_dest_is_in_the_cache(cache_dir):
    assert labelme.default_dir() == config.cache_dir() / "datasets" / "labelme" == cache_dir / "datasets" / "labelme"


def test_quick_mode_never_touches_the_network(cache_dir, monkeypatch, capsys, no_network):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    dest = download_labelme(n=100, progress=False)
    assert dest == cache_dir / "datasets" / "labelme"
    assert not cache_dir.exists()  # nothing created
    out = capsys.readouterr().out
    assert out.count(config.BANNER) == 1 and "not downloading LabelMe" in out


def test_an_interrupted_crawl_keeps_its_manifest(site, tmp_path, monkeypatch):
    server, base, served = site
    original = labelme._Crawl.candidates

    def interrupted(self):
        for k, key in enumerate(original(self)):
            if k == 2:
                raise KeyboardInterrupt  # Ctrl-C while listing, with a1 and a2 in flight or done
            yield key

    monkeypatch.setattr(labelme._Crawl, "candidates", interrupted)
    dest = tmp_path / "lm"
    with pytest.raises(KeyboardInterrupt):
        crawl(base, dest, 5)
    assert sorted(read_manifest(dest)) == [("a_folder", "a1.jpg"), ("a_folder", "a2.jpg")]
    monkeypatch.setattr(labelme._Crawl, "candidates", original)
    first = len(image_gets(server))
    with pytest.warns(UserWarning):
        crawl(base, dest, 5)
    assert "/Images/a_folder/a1.jpg" not in image_gets(server)[first:]
    assert len(read_manifest(dest)) == 5
