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
from dataclasses import dataclass
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
_Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """The parts of a request the edge reads and may rewrite (raw, still encoded)."""

    method: str
    scheme: str
    host: str
    port: int | None
    path: bytes  # percent-encoded path, no query
    query: bytes  # raw query string without "?"
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

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

    __slots__ = ("allowed", "auditor", "counts", "guard", "req", "tool", "where")

    def __init__(
        self, guard: EdgeGuard, req: OutgoingRequest, tool: str | None, auditor: Auditor
    ) -> None:
        self.guard = guard
        self.req = req
        self.tool = tool
        self.auditor = auditor
        self.where: dict[str, Any] = {
            "tool": tool,
            "host": req.host,
            "method": req.method,
            "path": req.path_text,
        }
        self.allowed: dict[str, Secret] = {}
        self.counts: dict[str, int] = {}

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
        self.auditor.emit("denied", name, detail=f"{how}: {reason}", **self.where)
        port = f":{req.port}" if req.port else ""
        raise PolicyViolation(
            f"secret {name} may not be sent to {req.scheme}://{req.host}{port}"
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
                    f"secret {name} may go to {self.req.host} but could not be loaded: {exc}"
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

    def check_raw_values(self, redactor: Any) -> None:
        # One scan over everything that leaves: the redactor knows every form of every
        # loaded value (hex, base64 even inside a Basic auth blob, percent-encoding...).
        # Header values only: names carry no values, and "x-api-key: ..." would wake the
        # redactor's keyword rules for nothing (3x the cost of the literal scan).
        req = self.req
        blob = b"\n".join([req.path, req.query, *(v for _, v in req.headers), req.body])
        names = redactor.contains_known(blob)
        if not names:
            return
        # A path can carry a pasted value (``/bot<token>/...``): never audit it as is.
        self.where["path"] = redactor.redact(req.path_text)
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
        state.check_raw_values(self.redactor)

        path = state.substitute(req.path, _url_escaped, "placeholder in path")
        query = state.substitute(req.query, _url_escaped, "placeholder in query")
        headers = self._substitute_headers(req, state)
        body = req.body
        if _MARK in body:
            encode = _ENCODERS[_form(req.header(b"content-type"))]
            body = state.substitute(body, encode, "placeholder in body")
        path, query, headers, body = self._apply_injections(state, path, query, headers, body)
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
        changed = False
        out: list[tuple[bytes, bytes]] = []
        for key, value in req.headers:
            new = value
            if _MARK in value:
                new = self._header_value(key, value, state)
            elif (
                value[:1] in b"Bb" and value[:6].lower() == _BASIC and key.lower() == _AUTHORIZATION
            ):
                new = self._basic_value(value, state)
            changed = changed or new is not value
            out.append((key, new))
        return tuple(out) if changed else req.headers

    def _header_value(self, key: bytes, value: bytes, state: _Pass) -> bytes:
        whole = _PLACEHOLDER_B.fullmatch(value.strip())
        name = _placeholder_name(whole.group()) if whole else None
        if name is not None:
            # A header that is exactly the placeholder, and is the header the policy injects
            # this secret into, gets the policy's template ("Bearer {value}", Basic auth).
            spec = self._inject_spec(name)
            header = _inject_header_name(spec) if spec is not None else None
            if header is not None and header.lower().encode() == key.lower():
                rendered = _render(spec, state.secret(name, "placeholder in header").reveal())
                return self._header_bytes(rendered, name)
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

    def _apply_injections(
        self, state: _Pass, path: bytes, query: bytes, headers: _Headers, body: bytes
    ) -> tuple[bytes, bytes, _Headers, bytes]:
        req = state.req
        key = (req.host, state.tool, req.scheme, req.port)
        injections = self._injections.get(key)
        if injections is None:
            # Decided once per destination: the policy is immutable once loaded, and
            # injections_for asks may_send for every declared secret.
            injections = self.policy.injections_for(
                req.host, state.tool, scheme=req.scheme, port=req.port
            )
            if len(self._injections) >= _CACHE_SIZE:
                self._injections.clear()
            self._injections[key] = injections
        for name, spec in injections:
            header = _inject_header_name(spec)
            query_param = getattr(spec, "query", None)
            json_field = getattr(spec, "json_field", None)
            if header is None and query_param is None and json_field is None:
                continue  # placeholders only
            # injections_for already asked may_send for this host and tool
            value = state.secret(name, "policy injection", checked=True).reveal()
            if header is not None:
                headers = self._set_header(headers, header, _render(spec, value), name)
            if query_param is not None:
                query = self._set_query(query, query_param, value)
            if json_field is not None:
                body = self._set_json_field(req, body, json_field, value)
        return path, query, headers, body

    def _set_header(self, headers: _Headers, name: str, value: str, secret: str) -> _Headers:
        # The policy's injection wins over whatever the caller put there (a dummy key).
        key = name.encode("latin-1")
        lower = key.lower()
        encoded = self._header_bytes(value, secret)
        kept = tuple((k, v) for k, v in headers if k.lower() != lower)
        if len(kept) == len(headers) - 1 and (key, encoded) in headers:
            return headers  # already there (a placeholder resolved to the same text)
        return (*kept, (key, encoded))

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
