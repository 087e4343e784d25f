"""A loopback stand-in for the Gemini API (generativelanguage.googleapis.com).

Used by ``keyguard demo`` and by the tests (``tests/fake_gemini.py`` re-exports it).

It speaks just enough of the REST protocol for the real google-genai SDK:
``POST /{version}/models/{model}:generateContent`` and
``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` (``version`` is ``v1``,
the SDK's default, or ``v1beta``). Every request is recorded (method, path, query,
headers, body) so tests assert on what actually reached the wire.

The reply is ``reply`` (a string or a callable of the request's prompt text) with
``{api_key}`` replaced by the ``x-goog-api-key`` header the server received: that is how
a test makes "the model" echo the real key back. Streaming replies are cut into
``chunk_size``-character SSE events, so an echoed key is split across events.

``RecordingServer`` is the generic part (threaded ``http.server`` on a free loopback
port, request log); the E2B stand-in reuses it. Nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyguard.demo.loopback import LoopbackHandler, LoopbackServer

__all__ = ["FakeGemini", "Recorded", "RecordingServer"]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def wire_text(self) -> str:
        """Everything the server saw, as one string: for "is the value anywhere" checks."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{head}\n\n" + self.body.decode(
            "utf-8", "replace"
        )


class _Handler(LoopbackHandler):
    server: _Server

    def _handle(self) -> None:
        body = self.read_body()
        split = urlsplit(self.path)
        rec = Recorded(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        with self.server.owner.lock:
            self.server.owner.requests.append(rec)
        self.server.owner.handle(self, rec)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # helpers used by RecordingServer subclasses
    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_chunks(self, status: int, content_type: str, chunks: list[bytes]) -> None:
        """A chunked response, one HTTP chunk per item, flushed one by one."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RecordingServer


class RecordingServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1:<free port> that records every request.

    Subclasses implement ``handle(handler, recorded)``. Use as a context manager.
    """

    httpd: _Server

    def __init__(self) -> None:
        super().__init__(_Server(("127.0.0.1", 0), _Handler))
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.httpd.owner = self

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the form policies name the host by."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, handler: _Handler, rec: Recorded) -> None:
        handler.send_json(404, {"error": "not found"})

    def seen(self, value: str) -> bool:
        """Whether ``value`` appeared anywhere in any request this server received."""
        return any(value in r.wire_text() for r in self.requests)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


_MODEL_PATH = re.compile(
    r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$"
)


class FakeGemini(RecordingServer):
    """The Gemini stand-in. ``reply`` may use ``{api_key}`` (the key this server received)
    and ``{prompt}`` (the request's text)."""

    def __init__(
        self,
        reply: str | Callable[[str], str] = "echo: {prompt}",
        *,
        chunk_size: int = 3,
        model_version: str = "fake-gemini-1",
    ) -> None:
        super().__init__()
        self.reply = reply
        self.chunk_size = chunk_size
        self.model_version = model_version

    def prompt_of(self, body: Any) -> str:
        """The text of the request: every text part of every content, in order."""
        texts: list[str] = []
        for content in (body or {}).get("contents", []):
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                if "functionResponse" in part:
                    texts.append(json.dumps(part["functionResponse"]))
        return "\n".join(texts)

    def answer(self, rec: Recorded) -> str:
        prompt = self.prompt_of(rec.json())
        reply = self.reply(prompt) if callable(self.reply) else self.reply
        # str.replace, not str.format: a prompt may contain braces.
        reply = reply.replace("{prompt}", prompt)
        return reply.replace("{api_key}", rec.headers.get("x-goog-api-key", ""))

    def _response(self, text: str, *, final: bool = True) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        out: dict[str, Any] = {"candidates": [cand], "modelVersion": self.model_version}
        if final:
            cand["finishReason"] = "STOP"
            out["usageMetadata"] = {
                "promptTokenCount": 3,
                "candidatesTokenCount": 5,
                "totalTokenCount": 8,
            }
        return out

    def handle(self, handler: _Handler, rec: Recorded) -> None:
        m = _MODEL_PATH.match(rec.path)
        if rec.method != "POST" or not m:
            handler.send_json(
                404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
            return
        if not rec.headers.get("x-goog-api-key"):
            handler.send_json(
                403,
                {
                    "error": {
                        "code": 403,
                        "message": "API key missing",
                        "status": "PERMISSION_DENIED",
                    }
                },
            )
            return
        text = self.answer(rec)
        if m.group(3) == "generateContent":
            handler.send_json(200, self._response(text))
            return
        pieces = [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)] or [
            ""
        ]
        events = [
            b"data: "
            + json.dumps(self._response(p, final=i == len(pieces) - 1)).encode()
            + b"\r\n\r\n"
            for i, p in enumerate(pieces)
        ]
        handler.send_chunks(200, "text/event-stream", events)
