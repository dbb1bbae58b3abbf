"""download(): bytes, checksums, resume, retries, HTML pages and time-outs against a local server."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import time

import pytest
from localserver import Route

from nstlib.data import download as dl
from nstlib.data.download import DownloadError

DATA = bytes(range(256)) * 1024 + b"tail"  # 262 148 bytes, several read chunks
DATA_SHA = hashlib.sha256(DATA).hexdigest()


def _get(url, dest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.001)
    return dl.download(url, dest, **kw)


def test_sha256_file_matches_hashlib_and_known_empty_digest(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    # SHA-256 of the empty string (FIPS 180-2 test vector)
    assert dl.sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    big = tmp_path / "big"
    big.write_bytes(DATA * 5)  # more than one 1 MiB read
    assert dl.sha256_file(big) == hashlib.sha256(DATA * 5).hexdigest()


def test_download_bytes_checksum_and_user_agent(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "sub" / "data.bin"
    assert _get(url, dest, sha256=DATA_SHA.upper(), size=len(DATA)) == dest
    assert dest.read_bytes() == DATA
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == DATA_SHA
    assert not dest.with_name("data.bin.part").exists()
    (request,) = http_server.requests_for("/data.bin")
    assert request.headers["user-agent"].startswith("nstlib/")
    assert "neural style transfer course" in request.headers["user-agent"]
    assert "range" not in request.headers


def test_download_replaces_existing_file(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"old contents")
    _get(url, dest)
    assert dest.read_bytes() == DATA


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DownloadError) as info:
        _get(url, dest, sha256=wrong)
    message = str(info.value)
    assert url in message and wrong in message and DATA_SHA in message
    assert "changed upstream" in message
    assert not dest.exists() and not dest.with_name("data.bin.part").exists()


def test_existing_dest_survives_a_failed_download(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"good old file")
    with pytest.raises(DownloadError):
        _get(url, dest, sha256=hashlib.sha256(b"x").hexdigest())
    assert dest.read_bytes() == b"good old file"


def test_announced_size_mismatch_fails_before_the_body(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=f"announces {len(DATA)} bytes but {len(DATA) + 1}"):
        _get(url, dest, size=len(DATA) + 1)
    assert not dest.exists() and not dest.with_name("data.bin.part").exists()


def test_size_mismatch_without_content_length(http_server, tmp_path):
    url = http_server.add("/data.bin", Route(body=DATA, content_length=False))
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=f"expected {len(DATA) - 1} bytes, got {len(DATA)}"):
        _get(url, dest, size=len(DATA) - 1)
    assert not dest.exists() and not dest.with_name("data.bin.part").exists()
    # without a size check the same body is fine: its end is the end of the connection
    assert _get(url, dest).read_bytes() == DATA


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_resume_after_connection_drop(http_server, tmp_path, capsys, reset):
    cut = 100_000
    url = http_server.add("/data.bin", Route(body=DATA, drop_after=cut, reset=reset), DATA)
    dest = tmp_path / "data.bin"
    _get(url, dest, sha256=DATA_SHA, size=len(DATA), retries=2, progress=True)
    assert dest.read_bytes() == DATA
    first, second = http_server.requests_for("/data.bin")
    assert "range" not in first.headers
    captured = capsys.readouterr()
    notice = captured.out + captured.err
    if reset:
        # bytes buffered inside the failing read are lost: the client resumes from what it wrote
        start = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
        assert 0 < start <= cut
        assert f"connection lost after {start} bytes (ConnectionResetError" in notice
    else:
        assert second.headers["range"] == f"bytes={cut}-"
        assert f"connection closed after {cut} of {len(DATA)} bytes" in notice


def test_resume_from_leftover_part(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(DATA[:12345])
    _get(url, dest, sha256=DATA_SHA)
    assert dest.read_bytes() == DATA
    (request,) = http_server.requests_for("/data.bin")
    assert request.headers["range"] == "bytes=12345-"


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    url = http_server.add("/data.bin", Route(body=DATA, ranges=False))
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(b"stale bytes " * 100)
    _get(url, dest, sha256=DATA_SHA)
    assert dest.read_bytes() == DATA
    (request,) = http_server.requests_for("/data.bin")
    assert request.headers["range"] == "bytes=1200-"  # asked, got a 200, rewrote from zero


def test_wrong_content_range_restarts(http_server, tmp_path):
    whole = f"bytes 0-{len(DATA) - 1}/{len(DATA)}"  # the whole file, though bytes=500- was asked for
    wrong = Route(body=DATA, status=206, ranges=False, headers={"Content-Range": whole})
    url = http_server.add("/data.bin", wrong, DATA)
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(DATA[:500])
    _get(url, dest, sha256=DATA_SHA)
    assert dest.read_bytes() == DATA
    first, second = http_server.requests_for("/data.bin")
    assert first.headers["range"] == "bytes=500-" and "range" not in second.headers


def test_416_restarts_from_zero(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(DATA + b"extra")  # longer than the file: 416
    _get(url, dest, sha256=DATA_SHA)
    assert dest.read_bytes() == DATA
    first, second = http_server.requests_for("/data.bin")
    assert first.headers["range"] == f"bytes={len(DATA) + 5}-" and "range" not in second.headers


def test_corrupt_leftover_part_is_caught_by_the_checksum(http_server, tmp_path):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    part = dest.with_name("data.bin.part")
    part.write_bytes(b"\xff" * 1000)  # wrong bytes that a resume would keep
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        _get(url, dest, sha256=DATA_SHA)
    assert not dest.exists() and not part.exists()
    assert _get(url, dest, sha256=DATA_SHA).read_bytes() == DATA  # the retry the message asks for works


def test_404_is_not_retried(http_server, tmp_path):
    url = http_server.url("/missing.bin")
    dest = tmp_path / "missing.bin"
    with pytest.raises(DownloadError) as info:
        _get(url, dest, retries=3)
    assert "404" in str(info.value) and url in str(info.value) and "check the URL" in str(info.value)
    assert http_server.count("/missing.bin") == 1
    assert not dest.exists()


def test_403_hint(http_server, tmp_path):
    url = http_server.add("/secret", Route(status=403, body=b"no", content_type="text/plain"))
    with pytest.raises(DownloadError, match="login"):
        _get(url, tmp_path / "secret")
    assert http_server.count("/secret") == 1


def test_500_is_retried_then_succeeds(http_server, tmp_path):
    url = http_server.add("/data.bin", Route(status=500, body=b"oops", content_type="text/plain"),
                          Route(status=503, body=b"busy", content_type="text/plain"), DATA)
    dest = tmp_path / "data.bin"
    _get(url, dest, sha256=DATA_SHA, retries=2)
    assert dest.read_bytes() == DATA
    assert http_server.count("/data.bin") == 3


def test_500_gives_up_after_retries(http_server, tmp_path):
    url = http_server.add("/data.bin", Route(status=502, body=b"bad gateway", content_type="text/plain"))
    with pytest.raises(DownloadError, match="HTTP 502.*gave up after 3 attempts"):
        _get(url, tmp_path / "data.bin", retries=2)
    assert http_server.count("/data.bin") == 3


def test_backoff_doubles(http_server, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(dl.time, "sleep", waits.append)
    url = http_server.add("/data.bin", Route(status=500, content_type="text/plain"))
    with pytest.raises(DownloadError):
        dl.download(url, tmp_path / "x", retries=3, backoff=0.5, progress=False)
    assert waits == [0.5, 1.0, 2.0]


def test_html_content_type_is_refused_with_hints(http_server, tmp_path):
    url = http_server.add("/file.jpg", Route(body=b"<html><body>Please log in</body></html>", content_type="text/html"))
    dest = tmp_path / "file.jpg"
    with pytest.raises(DownloadError) as info:
        _get(url, dest)
    message = str(info.value)
    assert url in message and "HTML" in message
    for hint in ("login", "rate-limit", "?dl=1", "proxy"):
        assert hint in message
    assert not dest.exists() and not dest.with_name("file.jpg.part").exists()
    assert http_server.count("/file.jpg") == 1


def test_html_body_is_detected_without_content_type(http_server, tmp_path):
    page = b"\n  <!DOCTYPE HTML>\n<html><title>Rate limit</title></html>"
    url = http_server.add("/file.jpg", Route(body=page, content_type="application/octet-stream"))
    dest = tmp_path / "file.jpg"
    with pytest.raises(DownloadError, match="HTML page"):
        _get(url, dest)
    assert not dest.exists() and not dest.with_name("file.jpg.part").exists()
    # asked for, an HTML page is fine
    assert _get(url, dest, expect_html=True).read_bytes() == page
    page_url = http_server.add("/page.html", Route(body=page, content_type="text/html"))
    assert _get(page_url, tmp_path / "page.html", expect_html=True).read_bytes() == page


def test_time_out_fails_fast_with_hint(http_server, tmp_path):
    url = http_server.add("/slow.bin", Route(body=DATA, delay=2.0))
    dest = tmp_path / "slow.bin"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        _get(url, dest, timeout=0.2, retries=1)
    elapsed = time.monotonic() - start
    assert elapsed < 1.5  # two attempts of 0.2 s, far less than one server delay
    message = str(info.value)
    assert "timed out" in message and "timeout=" in message and "proxy" in message
    assert http_server.count("/slow.bin") == 2
    assert not dest.exists()


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not connect.*gave up after 2 attempts"):
        _get(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", retries=1)
    assert not (tmp_path / "x.bin").exists()


def test_network_failure_keeps_part_for_resume(http_server, tmp_path):
    url = http_server.add("/data.bin", Route(body=DATA, drop_after=5000))
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="connection closed after 5000"):
        _get(url, dest, retries=0)
    assert not dest.exists()
    assert dest.with_name("data.bin.part").read_bytes() == DATA[:5000]
    http_server.add("/data.bin", DATA)
    _get(url, dest, sha256=DATA_SHA)
    assert dest.read_bytes() == DATA
    assert http_server.requests_for("/data.bin")[-1].headers["range"] == "bytes=5000-"


def test_plain_http_refused_for_other_hosts_without_network(tmp_path, no_network):
    with pytest.raises(DownloadError) as info:
        dl.download("http://example.com/file.jpg", tmp_path / "f.jpg", progress=False)
    assert "http://example.com/file.jpg" in str(info.value) and "https" in str(info.value)
    for bad in ("ftp://example.com/f.jpg", "file:///etc/passwd", "example.com/f.jpg"):
        with pytest.raises(DownloadError, match="only http"):
            dl.download(bad, tmp_path / "f.jpg", progress=False)
    assert not list(tmp_path.iterdir())


def test_loopback_names_are_allowed_over_http(http_server, tmp_path):
    http_server.add("/data.bin", DATA)
    url = f"http://localhost:{http_server.port}/data.bin"
    assert _get(url, tmp_path / "a").read_bytes() == DATA
    assert dl._is_loopback("127.0.0.1") and dl._is_loopback("::1") and dl._is_loopback("LOCALHOST")
    assert not dl._is_loopback("example.com") and not dl._is_loopback("10.0.0.1")


def test_redirect_to_plain_http_elsewhere_is_refused(http_server, tmp_path, monkeypatch):
    url = http_server.add("/moved", Route(status=302, headers={"Location": "http://example.com/f.bin"}))
    # the redirect target must not even be contacted
    real_connect = socket.socket.connect

    def connect(sock, address):
        if address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"contacted {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only_getaddrinfo(socket.getaddrinfo))
    with pytest.raises(DownloadError, match="plain http is refused"):
        _get(url, tmp_path / "f.bin")


def _loopback_only_getaddrinfo(real):
    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"looked up {host}")
        return real(host, *args, **kwargs)

    return getaddrinfo


def test_bad_arguments(tmp_path, no_network):
    url = "https://example.com/f"
    with pytest.raises(ValueError, match="sha256"):
        dl.download(url, tmp_path / "f", sha256="abc")
    with pytest.raises(ValueError, match="size"):
        dl.download(url, tmp_path / "f", size=-1)
    with pytest.raises(ValueError, match="retries"):
        dl.download(url, tmp_path / "f", retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        dl.download(url, tmp_path / "f", timeout=0)
    with pytest.raises(IsADirectoryError, match="folder"):
        dl.download(url, tmp_path)


def test_progress_bar_shown_only_when_asked(http_server, tmp_path, capsys):
    url = http_server.add("/data.bin", DATA)
    dl.download(url, tmp_path / "a.bin", progress=False)
    assert capsys.readouterr().err == ""
    dl.download(url, tmp_path / "b.bin", progress=True)
    err = capsys.readouterr().err
    assert "b.bin" in err and "256k" in err  # tqdm's total, in KiB (unit_divisor 1024)


def test_download_error_is_an_oserror_and_pickles():
    err = DownloadError("https://x/y", "reason here", "fix here")
    assert isinstance(err, OSError)
    assert "https://x/y" in str(err) and "reason here" in str(err) and "fix here" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.url, copy.reason, copy.fix, str(copy)) == (err.url, err.reason, err.fix, str(err))


def test_fetch_url_caches(http_server, cache_dir):
    url = http_server.add("/dir/data%20file.bin", DATA)
    first = dl.fetch_url(url, sha256=DATA_SHA, progress=False)
    expected_name = hashlib.sha1(url.encode()).hexdigest()[:16] + "-data_file.bin"
    assert first == cache_dir / "urls" / expected_name
    assert first.read_bytes() == DATA
    assert dl.fetch_url(url, sha256=DATA_SHA, progress=False) == first
    assert dl.fetch_url(url, progress=False) == first
    assert http_server.count() == 1  # later calls made no request


def test_fetch_url_refetches_a_corrupted_cache_file(http_server, cache_dir):
    url = http_server.add("/data.bin", DATA)
    path = dl.url_cache_path(url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"corrupted")
    with pytest.warns(UserWarning, match="expected " + DATA_SHA):
        assert dl.fetch_url(url, sha256=DATA_SHA, progress=False).read_bytes() == DATA
    assert http_server.count() == 1


def test_url_cache_path_names(cache_dir):
    assert dl.url_cache_path("https://h/a/b/").name.endswith("-download")
    assert dl.url_cache_path("https://h/x/evil%20name%3F.jpg?q=1").name.endswith("-evil_name_.jpg")
    assert dl.url_cache_path("https://h/a.jpg") != dl.url_cache_path("https://g/a.jpg")
    assert os.path.dirname(dl.url_cache_path("https://h/a.jpg")) == str(cache_dir / "urls")
