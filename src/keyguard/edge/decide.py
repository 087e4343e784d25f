"""The edge's request decisions, independent of any HTTP library.

The transports (httpx, httpx2) turn a request into an ``OutgoingRequest``, call
``EdgeGuard.decide`` and send what it returns, which is a *new* object whenever
anything changed: the caller's request is never touched, so a client that re-uses
it (redirects, retries) re-enters the edge with placeholders, not values.

Order of the checks on every request:
1. a real value (any form the redactor knows) towards a host it may not reach -> deny;
2. each placeholder in path, query, headers (also inside Basic auth) and body becomes
   the value if the policy allows that secret to that host for the current tool,
   else deny (nothing is sent);
3. the policy's injections for the host are applied (header/template, Basic auth,
   query parameter, JSON field) even when the caller wrote no placeholder.
Every decision is an audit event; errors name secret, host and path, never a value
nor a query string.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from keyguard.audit import Auditor, get_auditor
from keyguard.context import current_tool
from keyguard.errors import KeyguardError, PolicyViolation
from keyguard.secret import PLACEHOLDER_PREFIX, PLACEHOLDER_RE, parse_placeholder

if TYPE_CHECKING:
    from keyguard.secret import Secret

__all__ = ["EdgeGuard", "OutgoingRequest", "Verdict", "effective_tool"]

_MARK = PLACEHOLDER_PREFIX.encode()
_PLACEHOLDER_B = re.compile(PLACEHOLDER_RE.pattern.encode())
_BASIC = b"basic "
_AUTHORIZATION = b"authorization"
_BODY_LENGTH_HEADERS = (b"content-length", b"transfer-encoding")
_UNSAFE_IN_HEADER = re.compile(r"[\r\n\x00]")
_CACHE_SIZE = 1024
_MEMO_SIZE = 256
_Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """The parts of a request the edge reads and may rewrite (raw, still encoded).

    Path, query, headers and body are left out of the repr: after ``decide`` they can
    hold injected values, and a repr ends up in tracebacks rendered with locals.
    """

    method: str
    scheme: str
    host: str
    port: int | None
    path: bytes = field(repr=False)  # percent-encoded path, no query
    query: bytes = field(repr=False)  # raw query string without "?"
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)
    body: bytes = field(repr=False)

    def header(self, name: bytes) -> bytes | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def path_text(self) -> str:
        return self.path.decode("ascii", "replace")


@functools.lru_cache(maxsize=1024)
def _placeholder_name(text: bytes) -> str | None:
    # parse_placeholder verifies an HMAC; a process mints few placeholders, so the
    # answer for each is computed once.
    return parse_placeholder(text.decode("ascii"))


def effective_tool(policy: Any) -> str | None:
    """The acting tool: the innermost ``tool_context``, else ``default`` if the policy has it."""
    tool = current_tool()
    if tool is None and "default" in getattr(policy, "tools", {}):
        return "default"
    return tool


def _form(content_type: bytes | None) -> str:
    """How a value must be escaped in this body: ``json``, ``form`` or ``raw``."""
    if not content_type:
        return "raw"
    ct = content_type.split(b";", 1)[0].strip().lower()
    if ct == b"application/json" or ct.endswith(b"+json"):
        return "json"
    if ct == b"application/x-www-form-urlencoded":
        return "form"
    return "raw"


def _json_escaped(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False)[1:-1].encode()


def _url_escaped(value: str) -> bytes:
    return quote(value, safe="").encode()


def _raw(value: str) -> bytes:
    return value.encode()


_ENCODERS: dict[str, Callable[[str], bytes]] = {
    "json": _json_escaped,
    "form": _url_escaped,
    "url": _url_escaped,
    "raw": _raw,
}


def _render(spec: Any, value: str) -> str:
    """The header value an ``InjectSpec`` asks for (template or Basic auth)."""
    user = getattr(spec, "basic_user", None)
    if user is not None:
        token = base64.b64encode(f"{user}:{value}".encode()).decode()
        return f"Basic {token}"
    return spec.render(value)  # the policy's template ("{value}", "Bearer {value}")


def _inject_header_name(spec: Any) -> str | None:
    header = getattr(spec, "header", None)
    if header:
        return header
    if getattr(spec, "basic_user", None) is not None:
        return "Authorization"
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``EdgeGuard.decide`` returns: the request to send and the audit context.

    ``request`` is the input object itself when nothing had to change. ``where`` holds
    the audit fields of this request (tool, host, method, path without query, scrubbed
    if a value was pasted into it), for the response's events.
    """

    request: OutgoingRequest
    where: dict[str, Any]


class _Pass:
    """One request's decisions: the secrets resolved so far and how often each was used."""

    __slots__ = ("allowed", "auditor", "counts", "guard", "raw", "renders", "req", "tool", "where")

    def __init__(
        self, guard: EdgeGuard, req: OutgoingRequest, tool: str | None, auditor: Auditor
    ) -> None:
        self.guard = guard
        self.req = req
        self.tool = tool
        self.auditor = auditor
        # "host" and "path" are what messages and audit events show: check_raw_values
        # scrubs them when a value was pasted into the URL.
        self.where: dict[str, Any] = {
            "tool": tool,
            "host": req.host,
            "method": req.method,
            "path": req.path_text,
        }
        self.allowed: dict[str, Secret] = {}
        self.counts: dict[str, int] = {}
        self.raw = False  # the caller put a real value in the request
        # header values rendered from a secret in this pass: id -> (value, name, spec)
        self.renders: dict[int, tuple[bytes, str, Any]] = {}

    def check(self, name: str, how: str) -> None:
        """Deny (audit + ``PolicyViolation``) unless ``name`` may go to this destination."""
        req, tool = self.req, self.tool
        try:
            decision = self.guard._may_send(name, req, tool)
        except KeyguardError as exc:
            self.auditor.emit("policy_error", name, detail=type(exc).__name__, **self.where)
            raise
        if decision:
            return
        reason = getattr(decision, "reason", "") or "not allowed by the policy"
        if self.raw:  # the policy's reason names the host, which may hold the value
            reason = self.guard.redactor.redact(reason)
        self.auditor.emit("denied", name, detail=f"{how}: {reason}", **self.where)
        port = f":{req.port}" if req.port else ""
        raise PolicyViolation(
            f"secret {name} may not be sent to {req.scheme}://{self.where['host']}{port}"
            f" ({req.method} {self.where['path']}, tool {tool or 'none'}; {how}): {reason}"
        )

    def secret(self, name: str, how: str, *, checked: bool = False) -> Secret:
        """The secret ``name`` if it may go to this destination, else deny."""
        secret = self.allowed.get(name)
        if secret is None:
            if not checked:
                self.check(name, how)
            try:
                secret = self.guard.store.get(name)
            except KeyguardError as exc:
                detail = f"not loaded: {type(exc).__name__}"
                self.auditor.emit("denied", name, detail=detail, **self.where)
                raise PolicyViolation(
                    f"secret {name} may go to {self.where['host']} but could not be loaded: {exc}"
                ) from exc
            self.allowed[name] = secret
        self.counts[name] = self.counts.get(name, 0) + 1
        return secret

    def substitute(self, data: bytes, encode: Callable[[str], bytes], how: str) -> bytes:
        if _MARK not in data:
            return data

        def one(m: re.Match[bytes]) -> bytes:
            name = _placeholder_name(m.group())
            if name is None:  # looks like one but was not minted by this process
                return m.group()
            return encode(self.secret(name, how).reveal())

        return _PLACEHOLDER_B.sub(one, data)

    def check_raw_values(self, redactor: Any, blob: bytes) -> None:
        # One scan over everything that leaves (``blob``): the redactor knows every form
        # of every loaded value (hex, base64 even inside a Basic auth blob,
        # percent-encoding...). Header values only: names carry no values.
        req = self.req
        names = redactor.contains_known(blob)
        if not names:
            return
        self.raw = True
        # A path or a host name can carry a pasted value (``/bot<token>/...``,
        # ``<key>.example.com``): never audit nor report them as they are.
        self.where["path"] = redactor.redact(req.path_text)
        self.where["host"] = redactor.redact(req.host)
        for name in names:
            self.check(name, "real value in request")
            secret = self.guard.store.try_get(name)
            if secret is not None:
                self.auditor.emit("injected", secret, detail="real value by caller", **self.where)


class EdgeGuard:
    """Request decisions shared by every transport (and by anything else that sends).

    ``redactor=None`` means ``store.redactor``; ``auditor=None`` means the process-wide
    auditor (``keyguard.audit.get_auditor()``), looked up at use so it can be replaced.
    Policy answers are cached per destination: a loaded ``Policy`` is immutable.
    """

    def __init__(
        self,
        store: Any,
        policy: Any,
        redactor: Any = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self._redactor = redactor
        self._auditor = auditor
        self._injections: dict[tuple[str, str | None, str, int | None], list[Any]] = {}
        self._headers_of: dict[str, tuple[Any, tuple[bytes, bytes] | None]] = {}
        self._memo: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._decisions: dict[tuple[str, str, str | None, str, int | None], Any] = {}
        self._primed = False

    @property
    def redactor(self) -> Any:
        return self._redactor if self._redactor is not None else self.store.redactor

    @property
    def auditor(self) -> Auditor:
        return self._auditor if self._auditor is not None else get_auditor()

    def tool(self) -> str | None:
        return effective_tool(self.policy)

    def prime(self) -> None:
        """Load every secret the policy declares, so the redactor knows each value even if
        nothing asked the store for it yet (an SDK may read its key from the environment
        itself): a pasted raw value is then caught on its way to a wrong host."""
        self._primed = True
        for name in getattr(self.policy, "secrets", {}):
            try:
                self.store.try_get(name)
            except KeyguardError:
                continue  # unavailable now: placeholders for it will fail loudly instead

    def _may_send(self, name: str, req: OutgoingRequest, tool: str | None) -> Any:
        key = (name, req.host, tool, req.scheme, req.port)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self.policy.may_send(name, req.host, tool, scheme=req.scheme, port=req.port)
            if len(self._decisions) >= _CACHE_SIZE:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    # -- decisions -----------------------------------------------------------------------

    def decide(self, req: OutgoingRequest) -> Verdict:
        """Check ``req`` and return what to send (see the module docstring for the order)."""
        if not self._primed:
            self.prime()
        state = _Pass(self, req, self.tool(), self.auditor)
        values = [v for _, v in req.headers]
        blob = b"\n".join([req.path, req.query, *values, req.body])
        state.check_raw_values(self.redactor, blob)

        path, query, headers, body = req.path, req.query, req.headers, req.body
        # The separator is not part of a placeholder: no mark in the blob, none anywhere
        # (except base64-hidden in Basic auth, which _substitute_headers looks into).
        marked = _MARK in blob
        if marked:
            path = state.substitute(path, _url_escaped, "placeholder in path")
            query = state.substitute(query, _url_escaped, "placeholder in query")
            if _MARK in body:
                encode = _ENCODERS[_form(req.header(b"content-type"))]
                body = state.substitute(body, encode, "placeholder in body")
        memo_key = (req.headers, req.host, req.scheme, req.port, state.tool)
        replayed = self._replay(state, memo_key)
        if replayed is not None:
            headers = replayed
            query, body = self._apply_injections(state, query, body)
        else:
            before = dict(state.counts)
            if marked or any(v[:1] in b"Bb" for v in values):
                headers = self._substitute_headers(req, state)
            headers, query, body = self._apply_injections_all(state, headers, query, body)
            self._remember(state, memo_key, headers, before)
        if body is not req.body:
            headers = self._with_length(headers, len(body))
        out = req
        if (
            path is not req.path
            or query is not req.query
            or headers is not req.headers
            or body is not req.body
        ):
            out = OutgoingRequest(
                req.method, req.scheme, req.host, req.port, path, query, headers, body
            )
        for name, count in state.counts.items():
            state.auditor.emit("injected", state.allowed[name], count=count, **state.where)
        return Verdict(out, state.where)

    def _substitute_headers(
        self, req: OutgoingRequest, state: _Pass
    ) -> tuple[tuple[bytes, bytes], ...]:
        # Only the headers that may hold a placeholder (visible, or base64 in Basic auth)
        # are looked at one by one; the rest are copied as they are.
        candidates = [i for i, (_, v) in enumerate(req.headers) if _MARK in v or v[:1] in b"Bb"]
        if not candidates:
            return req.headers
        out: list[tuple[bytes, bytes]] | None = None
        for i in candidates:
            key, value = req.headers[i]
            if _MARK in value:
                new = self._header_value(key, value, state)
            elif value[:6].lower() == _BASIC and key.lower() == _AUTHORIZATION:
                new = self._basic_value(value, state)
            else:
                continue
            if new is not value:
                if out is None:
                    out = list(req.headers)
                out[i] = (key, new)
        return tuple(out) if out is not None else req.headers

    def _header_value(self, key: bytes, value: bytes, state: _Pass) -> bytes:
        whole = _PLACEHOLDER_B.fullmatch(value.strip())
        name = _placeholder_name(whole.group()) if whole else None
        if name is not None:
            # A header that is exactly the placeholder, and is the header the policy injects
            # this secret into, gets the policy's template ("Bearer {value}", Basic auth).
            spec, header = self._header_of(name)
            if header is not None and header[1] == key.lower():
                secret = state.secret(name, "placeholder in header")
                return self._rendered(state, name, spec, secret)
        return state.substitute(
            value,
            lambda v: self._header_bytes(v, "a secret"),
            "placeholder in header",
        )

    def _basic_value(self, value: bytes, state: _Pass) -> bytes:
        # httpx's BasicAuth(user, placeholder) hides the placeholder inside base64.
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return value
        if _MARK not in decoded:
            return value
        replaced = state.substitute(decoded, _raw, "placeholder in Basic auth")
        return value[:6] + base64.b64encode(replaced)

    @staticmethod
    def _header_bytes(value: str, name: str) -> bytes:
        if _UNSAFE_IN_HEADER.search(value):
            raise PolicyViolation(
                f"secret {name} contains a line break; refusing to put it in a header"
            )
        return value.encode("latin-1", "strict") if value.isascii() else value.encode()

    def _inject_spec(self, name: str) -> Any:
        spec = getattr(self.policy, "secrets", {}).get(name)
        return getattr(spec, "inject", None) if spec is not None else None

    def _header_of(self, name: str) -> tuple[Any, tuple[bytes, bytes] | None]:
        """(inject spec, (header name, lowered) it goes into, or None) of a secret."""
        hit = self._headers_of.get(name)
        if hit is None:
            spec = self._inject_spec(name)
            header = _inject_header_name(spec) if spec is not None else None
            key = header.encode("latin-1") if header is not None else None
            hit = (spec, (key, key.lower()) if key is not None else None)
            if len(self._headers_of) >= _CACHE_SIZE:
                self._headers_of.clear()
            self._headers_of[name] = hit
        return hit

    def _rendered(self, state: _Pass, name: str, spec: Any, secret: Secret) -> bytes:
        """The header value ``spec`` makes of ``secret`` (noted in ``state.renders``)."""
        encoded = self._header_bytes(_render(spec, secret.reveal()), name)
        state.renders[id(encoded)] = (encoded, name, spec)
        return encoded

    def _plan(self, state: _Pass) -> list[tuple[str, Any, Any, Any, Any]]:
        """The policy's injections for this destination and tool, as
        (secret, spec, (header, lowered) or None, query parameter, JSON field)."""
        req = state.req
        key = (req.host, state.tool, req.scheme, req.port)
        plan = self._injections.get(key)
        if plan is None:
            # Decided once per destination: the policy is immutable once loaded, and
            # injections_for asks may_send for every declared secret.
            plan = []
            for name, spec in self.policy.injections_for(
                req.host, state.tool, scheme=req.scheme, port=req.port
            ):
                header = _inject_header_name(spec)
                query_param = getattr(spec, "query", None)
                json_field = getattr(spec, "json_field", None)
                if header is None and query_param is None and json_field is None:
                    continue  # placeholders only
                hkey = header.encode("latin-1") if header is not None else None
                hkeys = (hkey, hkey.lower()) if hkey is not None else None
                plan.append((name, spec, hkeys, query_param, json_field))
            if len(self._injections) >= _CACHE_SIZE:
                self._injections.clear()
            self._injections[key] = plan
        return plan

    def _apply_injections_all(
        self, state: _Pass, headers: _Headers, query: bytes, body: bytes
    ) -> tuple[_Headers, bytes, bytes]:
        req = state.req
        for name, spec, hkeys, query_param, json_field in self._plan(state):
            # injections_for already asked may_send for this host and tool
            secret = state.secret(name, "policy injection", checked=True)
            if hkeys is not None:
                encoded = self._rendered(state, name, spec, secret)
                headers = self._set_header(headers, hkeys, encoded)
            if query_param is not None:
                query = self._set_query(query, query_param, secret.reveal())
            if json_field is not None:
                body = self._set_json_field(req, body, json_field, secret.reveal())
        return headers, query, body

    def _apply_injections(self, state: _Pass, query: bytes, body: bytes) -> tuple[bytes, bytes]:
        """The query and JSON-body injections after a replay (which did the headers and
        counted every injection, so the secrets are in ``state.allowed`` already)."""
        for name, _spec, _hkeys, query_param, json_field in self._plan(state):
            if query_param is not None:
                query = self._set_query(query, query_param, state.allowed[name].reveal())
            if json_field is not None:
                body = self._set_json_field(
                    state.req, body, json_field, state.allowed[name].reveal()
                )
        return query, body

    # -- the header memo -------------------------------------------------------------------
    # A client sends the same headers again and again; what the edge makes of them
    # (placeholders swapped, the policy's headers injected) depends only on the headers,
    # the destination, the tool (policy answers are fixed) and the secrets' values. The
    # memo keeps the recipe, never a value (the edge holds none; only the store and the
    # redactor do): the caller's headers, and which positions get which secret rendered
    # by which spec, with the Secret objects used. A replay checks each is still the
    # object the store holds (``store.get`` still runs: TTL and rotation apply, a rotated
    # value is a new object) and renders afresh; anything else takes the full path.
    # Only successful passes without a pasted raw value, whose every changed header is a
    # whole rendered value, are remembered; a denial is decided afresh every time.

    def _replay(self, state: _Pass, key: tuple[Any, ...]) -> _Headers | None:
        hit = self._memo.get(key)
        if hit is None:
            return None
        template, slots, used = hit
        allowed = state.allowed
        for name, secret, _count in used:
            current = allowed.get(name)
            if current is None:
                try:
                    current = self.store.get(name)
                except KeyguardError:
                    current = None
            if current is not secret:
                self._memo.pop(key, None)
                return None
        counts = state.counts
        for name, secret, count in used:
            allowed.setdefault(name, secret)
            counts[name] = counts.get(name, 0) + count
        if template is None:
            return state.req.headers
        out = list(template)
        for i, hkey, name, spec in slots:
            out[i] = (hkey, self._rendered(state, name, spec, allowed[name]))
        return tuple(out)

    def _remember(
        self, state: _Pass, key: tuple[Any, ...], headers: _Headers, before: dict[str, int]
    ) -> None:
        if state.raw:
            return  # the key (the caller's headers) may hold a real value: keep nothing
        req = state.req
        template: list[tuple[bytes, bytes]] | None = None
        slots: list[tuple[int, bytes, str, Any]] = []
        if headers is not req.headers:
            inputs = {id(v): v for _, v in req.headers}
            template = []
            for i, (k, v) in enumerate(headers):
                rendered = state.renders.get(id(v))
                if rendered is not None and rendered[0] is v:
                    slots.append((i, k, rendered[1], rendered[2]))
                    template.append((k, b""))  # the value is rendered at each replay
                elif inputs.get(id(v)) is v:
                    template.append((k, v))
                else:
                    return  # made otherwise (inside a value, Basic auth): not replayable
        counts = state.counts
        used = tuple(
            (name, state.allowed[name], n - before.get(name, 0))
            for name, n in counts.items()
            if n != before.get(name, 0)
        )
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = (tuple(template) if template is not None else None, tuple(slots), used)

    @staticmethod
    def _set_header(headers: _Headers, keys: tuple[bytes, bytes], encoded: bytes) -> _Headers:
        # The policy's injection wins over whatever the caller put there (a dummy key).
        key, lower = keys
        lowered = [k.lower() for k, _ in headers]
        found = lowered.count(lower)
        if found == 1 and headers[lowered.index(lower)] == (key, encoded):
            return headers  # already there (a placeholder resolved to the same text)
        if found:
            headers = tuple(h for h, k in zip(headers, lowered, strict=True) if k != lower)
        return (*headers, (key, encoded))

    @staticmethod
    def _set_query(query: bytes, param: str, value: str) -> bytes:
        name = quote(param, safe="").encode()
        pairs = [p for p in query.split(b"&") if p and p.split(b"=", 1)[0] != name]
        pairs.append(name + b"=" + quote(value, safe="").encode())
        return b"&".join(pairs)

    @staticmethod
    def _set_json_field(req: OutgoingRequest, body: bytes, field: str, value: str) -> bytes:
        if not body or _form(req.header(b"content-type")) != "json":
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        return json.dumps({**data, field: value}, ensure_ascii=False).encode()

    @staticmethod
    def _with_length(headers: _Headers, length: int) -> _Headers:
        kept = tuple((k, v) for k, v in headers if k.lower() not in _BODY_LENGTH_HEADERS)
        return (*kept, (b"Content-Length", str(length).encode()))
