"""The plumbing of a loopback HTTP stand-in: a quiet HTTP/1.1 request handler that reads
whole bodies, and a threaded server started and stopped in the background.

The demo's Gemini and E2B stand-ins and the tests' recording server are built on it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

__all__ = ["LoopbackHandler", "LoopbackServer", "Running"]


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no request log on stderr, ``read_body`` for any framing."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet test and demo output
        pass

    def read_body(self) -> bytes:
        """The request body, ``Transfer-Encoding: chunked`` (extensions and trailers
        skipped) or ``Content-Length``."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class Running:
    """``with thing:`` is ``thing.start()`` ... ``thing.stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoopbackServer(Running):
    """``httpd`` (already bound, so ``port`` is known) served from a daemon thread."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
