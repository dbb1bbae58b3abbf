"""download(): bytes, checksums, resume, retries, HTML pages and time-outs against a local server."""

from __future__ import annotations

import hashlib
import http.server
import multiprocessing
import os
import pickle
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from localserver import Route

from nstlib import config
from nstlib.data import download as dl
from nstlib.data.download import DownloadError

DATA = bytes(range(256)) * 1024 + b"tail"  # 262 148 bytes, several read chunks
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """download() keeps lock files in <cache>/locks: a cache of the test's own, outside the folders it lists."""
    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path_factory.mktemp("cache")))


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


def test_user_agent_names_the_package_version():
    import nstlib

    assert dl.user_agent() == f"nstlib/{nstlib.__version__} (neural style transfer course)"

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


@pytest.mark.parametrize("left", [DATA, b"not the file"], ids=["good", "bad"])
def test_a_waiter_reuses_a_file_written_while_it_waited(http_server, tmp_path, capsys, left):
    url = http_server.add("/data.bin", DATA)
    dest = tmp_path / "data.bin"
    holding = threading.Event()

    def other_process():
        with dl.file_lock(dest, progress=False):
            holding.set()
            time.sleep(0.3)
            dest.write_bytes(left)

    thread = threading.Thread(target=other_process)
    thread.start()
    assert holding.wait(10)
    assert _get(url, dest, sha256=DATA_SHA, progress=True) == dest
    thread.join()
    assert dest.read_bytes() == DATA
    # a good file is taken as it is; one failing the sha256 is downloaded afresh
    assert http_server.count() == (0 if left == DATA else 1)
    assert "data.bin: waiting for another download to finish" in capsys.readouterr().out


def test_lock_path_is_the_same_for_every_name_of_a_file(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    lock = dl.lock_path(tmp_path / "real" / "f.bin")
    absolute = str(tmp_path.resolve() / "real" / "f.bin")
    assert lock == config.cache_dir() / "locks" / (hashlib.sha1(absolute.encode()).hexdigest()[:3] + ".lock")
    assert dl.lock_path("real/f.bin") == dl.lock_path(tmp_path / "link" / "f.bin") == lock
    # a crawl of thousands of files needs at most 16**3 lock files
    names = {dl.lock_path(tmp_path / f"img{k:05d}.jpg").name for k in range(20_000)}
    assert 4000 < len(names) <= 4096

def test_unwritable_lock_folder_warns_and_still_downloads(http_server, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(config.ENV_CACHE, str(blocker / "cache"))  # <cache>/locks cannot be created under a file
    url = http_server.add("/data.bin", DATA)
    with pytest.warns(UserWarning, match=r"cannot create the lock folder .*without a lock.*NSTLIB_CACHE"):
        assert _get(url, tmp_path / "d" / "data.bin", sha256=DATA_SHA).read_bytes() == DATA

# ---- several processes downloading one file into one destination --------------------------------------------

BIG = hashlib.sha256(b"seed").digest() * 62_500  # 2,000,000 bytes: several pieces, not all alike
BIG_SHA = hashlib.sha256(BIG).hexdigest()
PIECE, PAUSE = 1 << 16, 0.05  # a slow link: 31 pieces of 64 KiB, 50 ms apart (about 1.5 s per download)


class _TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Sends ``server.body`` piece by piece with pauses, honours ``Range: bytes=N-`` and logs each GET."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self):
        body, wanted = self.server.body, self.headers.get("Range")
        self.server.log.append(wanted)
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        start = int(match.group(1)) if match and int(match.group(1)) < len(body) else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        for at in range(start, len(body), PIECE):
            self.wfile.write(body[at:at + PIECE])
            self.wfile.flush()
            time.sleep(PAUSE)


@pytest.fixture
def trickle_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TrickleHandler)
    server.daemon_threads, server.body, server.log = True, BIG, []
    server.handle_error = lambda request, address: None  # a client hanging up is not the test's concern
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _download_in_child(url, dest, delay, ready, results):
    """Run in a spawned process: import, wait for the others, sleep ``delay``, download, report the bytes' sha256."""
    from nstlib.data import download as child_dl

    ready.wait(timeout=120)
    time.sleep(delay)
    try:
        path = child_dl.download(url, dest, progress=False, backoff=0.01)
        data = Path(path).read_bytes()
        results.put((delay, "ok", hashlib.sha256(data).hexdigest(), len(data)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((delay, "error", f"{type(error).__name__}: {error}", 0))


@pytest.mark.parametrize("leftover", [0, 700_000], ids=["fresh", "resumed"])
def test_concurrent_processes_share_one_download(trickle_server, cache_dir, tmp_path, leftover):
    """Three real processes start 0.1 s apart on the same URL and destination, while the first is mid-way."""
    url = f"http://127.0.0.1:{trickle_server.server_address[1]}/big.bin"
    dest = tmp_path / "shared" / "big.bin"
    if leftover:
        dest.parent.mkdir()
        dest.with_name("big.bin.part").write_bytes(BIG[:leftover])  # an earlier, interrupted run
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_download_in_child, args=(url, str(dest), 0.1 * k, ready, results))
             for k in range(3)]
    for proc in procs:
        proc.start()
    outcomes = sorted(results.get(timeout=180) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == [(0.1 * k, "ok", BIG_SHA, len(BIG)) for k in range(3)]  # every caller got the file
    assert dest.read_bytes() == BIG
    assert os.listdir(dest.parent) == ["big.bin"]  # no .part, no temporary file, no lock beside it
    # one transfer, resumed from the leftover when there was one; the others waited and reused it
    assert trickle_server.log == [f"bytes={leftover}-" if leftover else None]
    assert all(p.suffix == ".lock" for p in (cache_dir / "locks").iterdir())


class _DripHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes, then sends one every 0.05 s: each read succeeds, the download never ends."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


def test_a_trickling_server_is_abandoned_not_waited_for(tmp_path):
    """Per-read time-outs never fire on a drip (each byte comes within 0.05 s); the rate check does:
    after ``timeout`` seconds an attempt averaging under ``min_rate`` bytes/s fails, and so does the
    download once its retries are spent (a 1,000-byte drip would otherwise take 50 s)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DripHandler)
    server.daemon_threads, server.requests = True, 0
    server.handle_error = lambda request, address: None
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/drip.bin"
        start = time.perf_counter()
        with pytest.raises(DownloadError, match="too slow") as info:
            dl.download(url, tmp_path / "drip.bin", timeout=0.5, retries=1, backoff=0.01, min_rate=100,
                        progress=False)
        seconds = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    assert seconds < 10, f"took {seconds:.1f} s"
    assert server.requests == 2 and "gave up after 2 attempts" in str(info.value)
    assert not (tmp_path / "drip.bin").exists()
    with pytest.raises(ValueError, match="min_rate"):
        dl.download(url, tmp_path / "x.bin", min_rate=-1)
