"""The edge as an httpx transport, written once for every httpx-shaped library.

httpx and httpx2 (google-genai's default stack) have the same ``Request``, ``Response``,
``URL``, byte-stream and transport classes, under different module names. The mixins
here take that module as the class attribute ``_http``; ``GuardedTransport`` below binds
it to httpx and ``keyguard.edge.httpx2_transport`` (``keyguard.edge.httpx2``) to httpx2.

The transport never touches the caller's request: it sends a rebuilt copy only when a
value must go in. httpx builds each redirect from the request *it* sent (the caller's),
so every hop comes back through here with placeholders and is decided afresh for its
own host: a redirect elsewhere carries no secret.

Responses come back scrubbed (``keyguard.edge.response``): a body announced at most
64 KiB long is read here at once and scrubbed with the headers in one pass; longer or
unannounced (chunked, SSE) bodies are scrubbed as they stream.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any, ClassVar

import httpx

from keyguard.audit import Auditor
from keyguard.edge.decide import EdgeGuard, OutgoingRequest
from keyguard.edge.response import (
    WHOLE_BODY_LIMIT,
    BodyScrubber,
    body_framing,
    report,
    scrub_headers,
    scrub_whole,
    strip_body_headers,
    whole_is_clean,
)

__all__ = [
    "AsyncGuardedTransport",
    "GuardedTransport",
    "async_guarded_client",
    "guarded_client",
]


@functools.cache
def _stream_classes(http: ModuleType) -> tuple[type, type]:
    """Byte-stream classes of ``http`` (httpx checks ``isinstance`` against its own)."""

    class ScrubbedStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, chunks: Iterator[bytes], inner: Any) -> None:
            self._chunks = chunks
            self._inner = inner

        def __iter__(self) -> Iterator[bytes]:
            yield from self._chunks

        def close(self) -> None:
            self._chunks.close()  # type: ignore[attr-defined]
            self._inner.close()

    class AsyncScrubbedStream(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, chunks: AsyncIterator[bytes], inner: Any) -> None:
            self._chunks = chunks
            self._inner = inner

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._chunks:
                yield chunk

        async def aclose(self) -> None:
            await self._chunks.aclose()  # type: ignore[attr-defined]
            await self._inner.aclose()

    return ScrubbedStream, AsyncScrubbedStream


def byte_headers(http: ModuleType, pairs: Any) -> Any:
    """``http.Headers(pairs)`` for (bytes, bytes) pairs, without a call per item.

    For byte pairs ``Headers`` stores ``(key, key.lower(), value)`` as given (no
    normalising happens to bytes); building that list directly is the one per-request
    copy of the headers. ``tests/test_edge_fastpath.py`` pins the equivalence.
    """
    headers = http.Headers()
    headers._list = [(k, k.lower(), v) for k, v in pairs]
    return headers


class _Edge:
    """What the sync and async transports share: request <-> parts, response scrubbing."""

    _http: ClassVar[ModuleType] = httpx

    def __init__(
        self,
        inner: Any = None,
        *,
        store: Any,
        policy: Any,
        redactor: Any = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.inner = inner if inner is not None else self._default_inner()
        self.guard = EdgeGuard(store, policy, redactor, auditor)

    def _default_inner(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def _parts(request: Any) -> OutgoingRequest:
        url = request.url
        path, _, query = url.raw_path.partition(b"?")
        return OutgoingRequest(
            method=request.method,
            scheme=url.raw_scheme.decode("ascii"),
            # the ASCII (IDNA) form: policy host patterns are written in it
            host=url.raw_host.decode("ascii").lower(),
            port=url.port,
            path=path,
            query=query,
            headers=tuple(request.headers.raw),
            body=request.content,
        )

    def _rebuild(self, request: Any, parts: OutgoingRequest, sent: OutgoingRequest) -> Any:
        if sent is parts:
            return request
        http = self._http
        url = request.url
        if sent.path is not parts.path or sent.query is not parts.query:
            url = url.copy_with(raw_path=sent.path + (b"?" + sent.query if sent.query else b""))
        # Headers come complete from the decision (Content-Length included), so the body
        # is handed over as a stream and httpx adds nothing of its own.
        stream = request.stream if sent.body is parts.body else http.ByteStream(sent.body)
        return http.Request(
            request.method,
            url,
            headers=byte_headers(http, sent.headers),
            stream=stream,
            extensions=request.extensions,
        )

    def _whole(
        self, response: Any, raw: list[tuple[bytes, bytes]], body: bytes, encoded: bool, where: Any
    ) -> Any:
        """The response around its complete, scrubbed body (``raw``: its headers)."""
        redactor = self.guard.redactor
        if not encoded and whole_is_clean(redactor, raw, body):
            # Nothing to scrub: the inner transport's response (a fresh object the edge
            # owns) goes back as it is, its consumed stream replaced by the bytes read.
            response.stream = self._http.ByteStream(body)
            return response
        headers, body, counts = scrub_whole(redactor, raw, body, decoded=encoded)
        report(self.guard.auditor, counts, where)
        return self._http.Response(
            response.status_code,
            # unchanged: hand over the parsed headers, not the list to parse again
            headers=response.headers if headers == raw else headers,
            stream=self._http.ByteStream(body),
            extensions=response.extensions,
        )

    def _streaming(self, response: Any, encoded: bool, where: dict[str, Any]) -> tuple:
        """(new headers, scrubber, decoding response or None) for a body scrubbed as it flows."""
        guard = self.guard
        headers, counts = scrub_headers(guard.redactor, response.headers.raw)
        scrubber = BodyScrubber(guard.redactor, guard.auditor, where, counts)
        # Compressed bodies are scrubbed after decompression (an echo inside gzip is still
        # an echo); httpx's own decoders do that, through the public iter_bytes.
        decoder = self._decoding(response) if encoded else None
        return strip_body_headers(headers, decoded=encoded), scrubber, decoder

    def _decoding(self, response: Any) -> Any:
        return self._http.Response(
            response.status_code, headers=response.headers, stream=response.stream
        )

    def _relabel(self, exc: Exception, request: Any, sent: Any) -> None:
        # An error from the inner transport points at the copy that holds real values;
        # point it back at the caller's request (placeholders only).
        if sent is not request and isinstance(exc, self._http.RequestError):
            exc.request = request

    def _respond(
        self, response: Any, raw: Any, body: bytes | None, encoded: bool, where: Any, *, aio: bool
    ) -> Any:
        """The scrubbed response: whole when the body was read, else a scrubbing stream."""
        if body is not None:
            return self._whole(response, raw, body, encoded, where)
        headers, scrubber, decoder = self._streaming(response, encoded, where)
        sync_cls, async_cls = _stream_classes(self._http)
        if aio:
            chunks = decoder.aiter_bytes() if decoder is not None else response.stream
            stream = async_cls(scrubber.aiterate(chunks), response.stream)
        else:
            chunks = decoder.iter_bytes() if decoder is not None else response.stream
            stream = sync_cls(scrubber.iterate(chunks), response.stream)
        return self._http.Response(
            response.status_code, headers=headers, stream=stream, extensions=response.extensions
        )


class SyncEdge(_Edge):
    def _default_inner(self) -> Any:
        return self._http.HTTPTransport()

    def handle_request(self, request: Any) -> Any:
        request.read()
        parts = self._parts(request)
        verdict = self.guard.decide(parts)
        sent = self._rebuild(request, parts, verdict.request)
        body = None
        try:
            response = self.inner.handle_request(sent)
            raw = response.headers.raw
            encoded, length = body_framing(raw)
            if length is not None and length <= WHOLE_BODY_LIMIT:
                if encoded:
                    body = self._decoding(response).read()
                else:
                    try:
                        body = b"".join(response.stream)
                    finally:
                        response.stream.close()
        except Exception as exc:
            self._relabel(exc, request, sent)
            # The copy sent and its verdict hold the injected values; a traceback rendered
            # with locals (Sentry, rich, pytest -l) shows this frame's.
            del sent, verdict
            raise
        return self._respond(response, raw, body, encoded, verdict.where, aio=False)

    def close(self) -> None:
        self.inner.close()


class AsyncEdge(_Edge):
    def _default_inner(self) -> Any:
        return self._http.AsyncHTTPTransport()

    async def handle_async_request(self, request: Any) -> Any:
        await request.aread()
        parts = self._parts(request)
        verdict = self.guard.decide(parts)
        sent = self._rebuild(request, parts, verdict.request)
        body = None
        try:
            response = await self.inner.handle_async_request(sent)
            raw = response.headers.raw
            encoded, length = body_framing(raw)
            if length is not None and length <= WHOLE_BODY_LIMIT:
                if encoded:
                    body = await self._decoding(response).aread()
                else:
                    try:
                        body = b"".join([chunk async for chunk in response.stream])
                    finally:
                        await response.stream.aclose()
        except Exception as exc:
            self._relabel(exc, request, sent)
            # The copy sent and its verdict hold the injected values; a traceback rendered
            # with locals (Sentry, rich, pytest -l) shows this frame's.
            del sent, verdict
            raise
        return self._respond(response, raw, body, encoded, verdict.where, aio=True)

    async def aclose(self) -> None:
        await self.inner.aclose()


def guard_client(client: Any, transport_cls: type, *, store: Any, policy: Any, **guard: Any) -> Any:
    """Put ``transport_cls`` (a guarded transport) in front of every transport of ``client``.

    The client is built first with all the caller's options (verify, limits, http2,
    proxies from the environment...), then each of its transports, the default one and
    every mount, is wrapped: nothing leaves the client around the edge.
    """

    def wrap(transport: Any) -> Any:
        if transport is None or isinstance(transport, _Edge):
            return transport
        return transport_cls(transport, store=store, policy=policy, **guard)

    client._transport = wrap(client._transport)
    client._mounts = {pattern: wrap(t) for pattern, t in client._mounts.items()}
    return client


class GuardedTransport(SyncEdge, httpx.BaseTransport):
    """``httpx.Client(transport=GuardedTransport(store=..., policy=...))``."""

    _http = httpx


class AsyncGuardedTransport(AsyncEdge, httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AsyncGuardedTransport(store=..., policy=...))``."""

    _http = httpx


def guarded_client(
    store: Any, policy: Any, *, redactor: Any = None, auditor: Auditor | None = None, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` (any of its keyword arguments) whose transports are the edge."""
    return guard_client(
        httpx.Client(**kwargs),
        GuardedTransport,
        store=store,
        policy=policy,
        redactor=redactor,
        auditor=auditor,
    )


def async_guarded_client(
    store: Any, policy: Any, *, redactor: Any = None, auditor: Auditor | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose transports are the edge."""
    return guard_client(
        httpx.AsyncClient(**kwargs),
        AsyncGuardedTransport,
        store=store,
        policy=policy,
        redactor=redactor,
        auditor=auditor,
    )
