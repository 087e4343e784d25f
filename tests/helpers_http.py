"""A loopback HTTP/1.1 server that records exactly what it received.

``RecordingServer(host)`` binds ``host:0`` (use 127.0.0.1 and 127.0.0.2 for two distinct
hosts, both loopback on Linux) and serves, with keep-alive:

* ``/echo``       -> 200; the body repeats everything received (request line, headers,
  body), sent with ``Transfer-Encoding: chunked`` in chunks of ``?chunk=N`` bytes
  (default 7, so any key is split across chunks), or with ``Content-Length`` if
  ``?length=1``; header ``X-Echo`` repeats the request's ``X-Echo-Me`` header;
  ``?gzip=1`` gzips the body first;
* ``/redirect``   -> ``?to=<url>`` with status ``?code=`` (default 307);
* anything else   -> 200 ``ok``.

Every request lands in ``server.requests`` as a ``Received`` (method, path, query,
headers, body). ``server.saw(value)`` says whether ``value`` reached the server in any
part, raw or percent-encoded.
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, quote, quote_plus, unquote_to_bytes, urlsplit

from keyguard.demo.loopback import LoopbackHandler, LoopbackServer

__all__ = ["Received", "RecordingServer", "recording_server"]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def raw(self) -> bytes:
        """Everything received, as one blob (request line, headers, body)."""
        head = f"{self.method} {self.path}?{self.query}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers
        )
        return head.encode("latin-1") + b"\r\n" + self.body


class _Handler(LoopbackHandler):
    server: _Server

    def _handle(self) -> None:
        split = urlsplit(self.path)
        received = Received(
            method=self.command,
            path=split.path,
            query=split.query,
            headers=list(self.headers.items()),
            body=self.read_body(),
        )
        self.server.record(received)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        if split.path == "/redirect":
            self.send_response(int(params.get("code", "307")))
            self.send_header("Location", params["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif split.path == "/echo":
            self._echo(received, params)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def _echo(self, received: Received, params: dict[str, str]) -> None:
        body = received.raw
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        echo = received.header("X-Echo-Me")
        if echo is not None:
            self.send_header("X-Echo", echo)
        if params.get("gzip"):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if params.get("length"):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        size = max(1, int(params.get("chunk", "7")))
        for i in range(0, len(body), size):
            piece = body[i : i + size]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()  # separate writes: the client really reads separate chunks
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.requests: list[Received] = []
        self._lock = threading.Lock()

    def record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)


class RecordingServer(LoopbackServer):
    """See the module docstring. Use as a context manager or call ``start``/``stop``."""

    httpd: _Server

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(_Server(host))
        self.host = host

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def redirect_url(self, to: str, code: int = 307) -> str:
        return self.url(f"/redirect?code={code}&to={quote(to, safe='')}")

    @property
    def requests(self) -> list[Received]:
        with self.httpd._lock:
            return list(self.httpd.requests)

    def clear(self) -> None:
        with self.httpd._lock:
            self.httpd.requests.clear()

    def saw(self, value: str) -> bool:
        """Did ``value`` reach this server anywhere: raw, percent-encoded or JSON-escaped?"""
        forms = {value.encode(), quote(value, safe="").encode(), quote_plus(value).encode()}
        for req in self.requests:
            blob = req.raw
            auth = req.header("Authorization") or ""
            if auth[:6].lower() == "basic ":
                blob += b"\n" + base64.b64decode(auth[6:].strip() + "==")
            decoded = unquote_to_bytes(blob)
            if any(f in blob or f in decoded for f in forms):
                return True
        return False


@contextmanager
def recording_server(host: str = "127.0.0.1") -> Iterator[RecordingServer]:
    with RecordingServer(host) as server:
        yield server
