"""A scriptable HTTP server on 127.0.0.1 for tests that must not touch the internet.

Each test says what every path answers::

    server.add("/file.bin", data)                             # 200 with these bytes
    server.add("/flaky", Route(status=500), data)             # 1st request 500, later ones 200
    server.add("/drop", Route(body=data, drop_after=1000), data)  # 1st cut after 1000 bytes
    server.add("/slow", Route(body=data, delay=2.0))          # every answer 2 s late
    server.add("/page", lambda req: Route(body=req.query.encode()))  # computed per request

``add(path, *responses)``: the n-th request (0-based) to ``path`` gets
``responses[min(n, len(responses) - 1)]``, so the last response repeats. A
response is a :class:`Route`, plain ``bytes`` (200, application/octet-stream) or a
callable taking the :class:`Request` and returning a Route. Paths match the
request's full path with its query string first, then the path without it;
anything else answers 404.

Every request is logged (:attr:`LocalServer.requests`, :meth:`LocalServer.count`,
:meth:`LocalServer.requests_for`) with lower-case header names, so a test can
assert ``Range`` or ``User-Agent`` and count retries. Exceptions in the
server's threads (a client that hung up, say) are collected in
:attr:`LocalServer.errors` instead of being printed.

Use it through the ``http_server`` fixture of ``conftest.py`` or as a context
manager: ``with LocalServer() as server: ...``.
"""

from __future__ import annotations

import http.server
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Union

__all__ = ["LocalServer", "Request", "Route"]

_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Route:
    """One scripted answer.

    Attributes:
        body: the response body (the whole file; ranges are cut from it).
        status: HTTP status. Range requests are honoured only when it is 200.
        content_type: ``Content-Type`` header, or None to send none.
        headers: extra headers (they override the automatic ones).
        ranges: honour ``Range: bytes=N-`` / ``bytes=N-M`` with 206 (or 416 when N
            is past the end) and send ``Accept-Ranges: bytes``; False ignores Range.
        content_length: send ``Content-Length`` (False: the body ends when the
            connection closes).
        drop_after: send only this many body bytes (after the full headers), then
            close the connection: the client sees a body shorter than announced.
        reset: with ``drop_after``, wait 0.1 s, then end with a TCP reset (RST) instead
            of a clean close, so the client's next read fails with ConnectionResetError.
        delay: seconds to wait before answering (to trigger client time-outs).
    """

    body: bytes = b""
    status: int = 200
    content_type: str | None = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    ranges: bool = True
    content_length: bool = True
    drop_after: int | None = None
    reset: bool = False
    delay: float = 0.0


@dataclass
class Request:
    """One logged request: method, full path (with query), path, query, headers (lower-case names)."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    time: float


Response = Union[Route, bytes, Callable[[Request], Route]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.0"  # one request per connection: drops and delays stay simple

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self):
        self._answer(head=False)

    def do_HEAD(self):
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        split = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            time=time.monotonic(),
        )
        route = self.server.owner._log_and_pick(request)
        if route is None:
            route = Route(body=b"no such route\n", status=404, content_type="text/plain", ranges=False)
        if route.delay:
            time.sleep(route.delay)
        status, body, headers = route.status, route.body, {}
        wanted = request.headers.get("range")
        if route.ranges:
            headers["Accept-Ranges"] = "bytes"
        if route.ranges and status == 200 and wanted:
            match = _RANGE_RE.fullmatch(wanted.strip())
            if match:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(body) - 1
                if start >= len(body):
                    status, headers["Content-Range"], body = 416, f"bytes */{len(body)}", b""
                else:
                    end = min(end, len(body) - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                    status, body = 206, body[start:end + 1]
        if route.content_type is not None:
            headers["Content-Type"] = route.content_type
        if route.content_length:
            headers["Content-Length"] = str(len(body))
        headers.update(route.headers)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        if route.drop_after is not None and route.drop_after < len(body):
            self.wfile.write(body[:route.drop_after])
            self.wfile.flush()
            if route.reset:
                time.sleep(0.1)  # let the client read what was sent: it then waits in recv() for the rest
                # SO_LINGER 0: close() sends RST instead of FIN; the client's recv() fails with ECONNRESET
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not wait for handlers still sleeping in a delay
    owner: "LocalServer"

    def handle_error(self, request, client_address):
        self.owner.errors.append(sys.exc_info()[1])


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) whose routes the test defines."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self._routes: dict[str, list[Response]] = {}
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------
    def start(self) -> "LocalServer":
        """Bind a free port and serve in a daemon thread; returns self."""
        self._server = _Server((self.host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="localserver", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port (handlers still sleeping are abandoned)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- addresses --------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started: call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The full URL of ``path`` (which must start with ``/``)."""
        if not path.startswith("/"):
            raise ValueError(f"path={path!r} must start with '/'")
        return self.base_url + path

    # -- routes and the request log --------------------------------------
    def add(self, path: str, *responses: Response) -> str:
        """Script the answers for ``path`` (see the module docstring); returns its URL."""
        if not responses:
            raise ValueError("add() needs at least one response (a Route, bytes or a callable)")
        for response in responses:
            if not isinstance(response, (Route, bytes)) and not callable(response):
                raise TypeError(f"response {response!r} must be a Route, bytes or a callable returning a Route")
        with self._lock:
            self._routes[path] = list(responses)
            self._served[path] = 0
        return self.url(path)

    def _log_and_pick(self, request: Request) -> Route | None:
        with self._lock:
            self.requests.append(request)
            key = request.target if request.target in self._routes else request.path
            responses = self._routes.get(key)
            if responses is None:
                return None
            n = self._served[key]
            self._served[key] = n + 1
            response = responses[min(n, len(responses) - 1)]
        if isinstance(response, bytes):
            return Route(body=response)
        if isinstance(response, Route):
            return response
        return response(request)

    def requests_for(self, path: str) -> list[Request]:
        """Logged requests whose path (without query) or full target equals ``path``."""
        with self._lock:
            return [r for r in self.requests if path in (r.path, r.target)]

    def count(self, path: str | None = None) -> int:
        """How many requests were made (to ``path``, or to any path when None)."""
        if path is None:
            with self._lock:
                return len(self.requests)
        return len(self.requests_for(path))
