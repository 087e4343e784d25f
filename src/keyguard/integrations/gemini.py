"""A google-genai ``Client`` that never holds the Gemini key.

``client(store, policy)`` builds ``google.genai.Client`` with the key's *placeholder* and
with HTTP clients of our own making for both its paths (sync and async) on the stack the
SDK would pick (httpx2 by default, httpx with ``GOOGLE_GENAI_HTTP_CLIENT=httpx``). Their
transports are, outermost first:

1. prompt redaction: JSON/text request bodies (``contents``, ``system_instruction``,
   function results, chat history: all of them travel in the body) go through the
   redactor, and any placeholder in a body becomes ``[REDACTED:NAME]``: a key is never
   prompt material, and the edge below would otherwise turn a placeholder into the value;
2. the edge (``keyguard.edge``): the placeholder in ``x-goog-api-key`` becomes the key
   only towards a host the policy allows; anything else is refused before it is sent
   (so a per-call ``http_options.base_url`` elsewhere gets no key); responses are scrubbed.

Giving the SDK its own ``httpx_async_client`` also keeps it off aiohttp, which it would
otherwise prefer for async calls when installed, around the edge.

Streams: the edge scrubs bytes, but a streamed answer splits text across SSE events, so
a key the model echoes can arrive as ``"AIz"`` + ``"aSy..."`` in two JSON documents.
``generate_content_stream`` (sync, async, and chats, which call it) is therefore also
redacted at the text level with one streaming redactor per candidate.

Not covered: the Live API (``client.aio.live``) talks over websockets, not these HTTP
clients; use it only with a key you are willing to expose to the process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from keyguard.audit import get_auditor
from keyguard.context import tool_context
from keyguard.integrations._common import placeholder, resolve_redactor
from keyguard.secret import PLACEHOLDER_RE, parse_placeholder

if TYPE_CHECKING:
    from google import genai

__all__ = ["DEFAULT_SECRET", "client", "redact_stream", "redact_stream_async"]

DEFAULT_SECRET = "GEMINI_API_KEY"  # noqa: S105 - a name, not a value
_TEXT_TYPES = ("application/json", "text/")
_LENGTH_HEADERS = ("content-length", "transfer-encoding")


def _redact_body(body: bytes, redactor: Any) -> tuple[bytes, int]:
    """The body with known values/patterns redacted and placeholders neutralised."""
    text = body.decode("utf-8", "surrogateescape")
    count = len(redactor.findings(text))
    text = redactor.redact(text) if count else text

    def neutralise(m: Any) -> str:
        name = parse_placeholder(m.group())
        return m.group() if name is None else f"[REDACTED:{name}]"

    if "kg_ph_" in text:
        text, n = PLACEHOLDER_RE.subn(neutralise, text)
        count += n
    return text.encode("utf-8", "surrogateescape"), count


class _PromptRedaction:
    """Shared by the four transports below (httpx/httpx2 x sync/async)."""

    _http: ModuleType

    def __init__(self, inner: Any, redactor: Any, tool: str | None) -> None:
        self.inner = inner
        self.redactor = redactor
        self.tool = tool

    def _rewrite(self, request: Any) -> Any:
        ctype = request.headers.get("content-type", "")
        if not request.content or not ctype.startswith(_TEXT_TYPES):
            return request  # uploads of binary files pass as they are
        body, count = _redact_body(request.content, self.redactor)
        if not count:
            return request
        get_auditor().emit(
            "redacted",
            count=count,
            tool=self.tool,
            host=request.url.host,
            method=request.method,
            path=request.url.path,
            detail="gemini request body",
        )
        headers = [
            (k, v) for k, v in request.headers.raw if k.lower().decode() not in _LENGTH_HEADERS
        ]
        return self._http.Request(
            request.method,
            request.url,
            headers=headers,
            content=body,
            extensions=request.extensions,
        )

    def _scope(self) -> Any:
        return tool_context(self.tool) if self.tool else contextlib.nullcontext()


@functools.cache
def _transport_classes(http: ModuleType) -> tuple[type, type]:
    class PromptRedactionTransport(_PromptRedaction, http.BaseTransport):  # type: ignore[name-defined,misc]
        _http = http

        def handle_request(self, request: Any) -> Any:
            request.read()
            with self._scope():
                return self.inner.handle_request(self._rewrite(request))

        def close(self) -> None:
            self.inner.close()

    class AsyncPromptRedactionTransport(_PromptRedaction, http.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        _http = http

        async def handle_async_request(self, request: Any) -> Any:
            await request.aread()
            with self._scope():
                return await self.inner.handle_async_request(self._rewrite(request))

        async def aclose(self) -> None:
            await self.inner.aclose()

    return PromptRedactionTransport, AsyncPromptRedactionTransport


def _stack() -> tuple[ModuleType, type, type]:
    """(http module, guarded sync transport, guarded async transport) for the stack the
    SDK would choose: ``GOOGLE_GENAI_HTTP_CLIENT`` if set, else httpx2 when installed."""
    wanted = os.environ.get("GOOGLE_GENAI_HTTP_CLIENT", "").strip().lower()
    if wanted != "httpx":
        try:
            http = importlib.import_module("httpx2")
        except ImportError:
            if wanted == "httpx2":
                raise ImportError(
                    "GOOGLE_GENAI_HTTP_CLIENT=httpx2 but httpx2 is not installed "
                    "(pip install 'keyguard[gemini]')"
                ) from None
        else:
            from keyguard.edge import httpx2 as edge2

            return http, edge2.GuardedTransport, edge2.AsyncGuardedTransport
    import httpx

    from keyguard.edge import AsyncGuardedTransport, GuardedTransport

    return httpx, GuardedTransport, AsyncGuardedTransport


def client(
    store: Any,
    policy: Any,
    *,
    redactor: Any = None,
    tool: str | None = None,
    http_options: Any = None,
    secret: str = DEFAULT_SECRET,
    **kwargs: Any,
) -> genai.Client:
    """A ``google.genai.Client`` for the Gemini Developer API, guarded by keyguard.

    ``redactor=None`` means ``store.redactor``. ``tool`` names the tool every call of this
    client acts as (else the ambient ``tool_context``, else the policy's ``default``).
    ``http_options`` (a ``HttpOptions`` or dict) is honoured except for the HTTP clients,
    which must be ours: pass ``client_args``/``async_client_args`` (their ``transport``
    becomes the edge's inner transport). Other ``kwargs`` go to ``genai.Client``.
    """
    from google import genai
    from google.genai import types

    for banned in ("api_key", "vertexai", "enterprise", "credentials"):
        if kwargs.get(banned) not in (None, False):
            raise ValueError(
                f"keyguard.integrations.gemini.client: {banned}= is not supported; the key "
                f"comes from the store ({secret}) and only the Gemini Developer API is guarded"
            )
    if isinstance(http_options, dict):
        http_options = types.HttpOptions(**http_options)
    options = http_options.model_copy() if http_options is not None else types.HttpOptions()
    for field in ("httpx_client", "httpx_async_client", "aiohttp_client"):
        if getattr(options, field, None) is not None:
            raise ValueError(
                f"http_options.{field} cannot be guarded after the fact; pass client_args / "
                "async_client_args instead and keyguard builds the clients"
            )

    redactor = resolve_redactor(store, redactor)
    key = placeholder(store, redactor, secret)  # the value stays in the store
    http, guarded, async_guarded = _stack()
    sync_redaction, async_redaction = _transport_classes(http)

    def build(client_cls: Any, args: dict[str, Any] | None, edge_cls: type, outer: type) -> Any:
        args = dict(args or {})
        inner = args.pop("transport", None)
        edge = edge_cls(inner, store=store, policy=policy, redactor=redactor)
        if options.timeout is not None:
            args.setdefault("timeout", options.timeout / 1000)  # HttpOptions.timeout is ms
        return client_cls(transport=outer(edge, redactor, tool), **args)

    options.httpx_client = build(http.Client, options.client_args, guarded, sync_redaction)
    options.httpx_async_client = build(
        http.AsyncClient, options.async_client_args, async_guarded, async_redaction
    )
    options.client_args = None
    options.async_client_args = None

    gclient = genai.Client(api_key=key, http_options=options, **kwargs)
    _guard_streams(gclient, redactor)
    return gclient


# -- streamed answers -------------------------------------------------------------------


def _texts(chunk: Any) -> Iterator[tuple[int, Any]]:
    """(candidate index, part) for every text part of a streamed response chunk."""
    for i, cand in enumerate(getattr(chunk, "candidates", None) or []):
        content = getattr(cand, "content", None)
        for part in getattr(content, "parts", None) or []:
            if isinstance(getattr(part, "text", None), str):
                yield i, part


class _ChunkRedactor:
    """Text-level streaming redaction of ``GenerateContentResponse`` chunks, one stream per
    candidate; the last chunk is held back so the redactor's held tail can join it."""

    def __init__(self, redactor: Any) -> None:
        self.redactor = redactor
        self.streams: dict[int, Any] = {}
        self.pending: Any = None

    def feed(self, chunk: Any) -> list[Any]:
        """The chunks ready to hand on (the one before ``chunk``, if any)."""
        for index, part in _texts(chunk):
            stream = self.streams.get(index)
            if stream is None:
                stream = self.streams[index] = self.redactor.stream()
            part.text = stream.feed(part.text)
        for cand in getattr(chunk, "candidates", None) or []:
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or []:
                call = getattr(part, "function_call", None)
                if call is not None and call.args:
                    call.args = self.redactor.redact_obj(call.args)
        out, self.pending = self.pending, chunk
        return [] if out is None else [out]

    def finish(self) -> list[Any]:
        chunk, self.pending = self.pending, None
        if chunk is None:
            return []
        from google.genai import types

        for index, stream in self.streams.items():
            tail = stream.flush()
            if not tail:
                continue
            parts = [p for i, p in _texts(chunk) if i == index]
            if parts:
                parts[-1].text += tail
                continue
            cands = chunk.candidates or []
            if index < len(cands):
                cand = cands[index]
                if cand.content is None:
                    cand.content = types.Content(role="model", parts=[])
                cand.content.parts = [*(cand.content.parts or []), types.Part(text=tail)]
        return [chunk]


def redact_stream(chunks: Iterator[Any], redactor: Any) -> Iterator[Any]:
    """Redact a ``generate_content_stream`` iterator so that no chunk boundary hides a key."""
    state = _ChunkRedactor(redactor)
    for chunk in chunks:
        yield from state.feed(chunk)
    yield from state.finish()


async def redact_stream_async(chunks: AsyncIterator[Any], redactor: Any) -> AsyncIterator[Any]:
    """The async form of ``redact_stream``."""
    state = _ChunkRedactor(redactor)
    async for chunk in chunks:
        for ready in state.feed(chunk):
            yield ready
    for ready in state.finish():
        yield ready


def _guard_streams(gclient: Any, redactor: Any) -> None:
    # Instance attributes shadow the methods of this client's Models objects only; chats
    # hold the same Models object, so their send_message_stream is covered too.
    models = gclient.models
    sync_stream: Callable[..., Iterator[Any]] = models.generate_content_stream

    @functools.wraps(sync_stream)
    def generate_content_stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
        return redact_stream(sync_stream(*args, **kwargs), redactor)

    models.generate_content_stream = generate_content_stream

    amodels = gclient.aio.models
    async_stream: Callable[..., Any] = amodels.generate_content_stream

    @functools.wraps(async_stream)
    async def agenerate_content_stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return redact_stream_async(await async_stream(*args, **kwargs), redactor)

    amodels.generate_content_stream = agenerate_content_stream
