"""An n8n client whose API key and webhook credentials are filled in at the edge.

``N8nClient(base_url, store, policy)`` speaks n8n's public API (``/api/v1``): the
``X-N8N-API-KEY`` header carries the key's placeholder, which the edge turns into the
value only if the policy allows that secret to that host for the acting tool.
``trigger_webhook`` calls a production (or test) webhook with header, Basic or JWT
auth, each filled from a named secret the same way. Responses pass the edge's scrubber,
so a workflow that echoes its input never hands a key back; n8n errors become
``N8nError`` carrying status, method, path and n8n's (redacted) message, never a value.

Policy tip: declare the n8n secrets with ``inject: {hosts: [...]}`` and no ``header:``.
The client then puts each placeholder only on the requests that need it; with
``header:`` the edge adds the secret to *every* request to that host, webhook calls
(whose workflows can read their headers) included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from keyguard.context import tool_context
from keyguard.errors import KeyguardError
from keyguard.integrations._common import placeholder, resolve_redactor

__all__ = [
    "DEFAULT_SECRET",
    "AsyncN8nClient",
    "BasicAuth",
    "HeaderAuth",
    "JwtAuth",
    "N8nClient",
    "N8nError",
]

DEFAULT_SECRET = "N8N_API_KEY"  # noqa: S105 - a name, not a value
API_KEY_HEADER = "X-N8N-API-KEY"


class N8nError(KeyguardError):
    """n8n answered with an error (or could not be reached). Carries no secret value."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HeaderAuth:
    """Webhook "Header Auth": header ``header`` = the secret ``secret``."""

    secret: str
    header: str = "Authorization"


@dataclass(frozen=True)
class BasicAuth:
    """Webhook "Basic Auth": ``user`` and the password from secret ``secret``."""

    user: str
    secret: str


@dataclass(frozen=True)
class JwtAuth:
    """Webhook "JWT Auth": ``Authorization: Bearer <token from secret>``."""

    secret: str


WebhookAuth = HeaderAuth | BasicAuth | JwtAuth


_Prepared = tuple[str, str, dict[str, Any]]  # (method, path, keyword arguments of request)


class _Base:
    """Everything the sync and async clients share: construction, request building,
    response and error handling, the public calls. They differ only where the wire is
    used (``_send``, ``_all_pages``, closing); a call is prepared when it is sent, so on
    ``AsyncN8nClient`` nothing happens until it is awaited."""

    _send: Callable[[Callable[[], _Prepared]], Any]

    def __init__(
        self,
        base_url: str,
        store: Any,
        policy: Any,
        *,
        tool: str | None = None,
        secret: str = DEFAULT_SECRET,
        redactor: Any = None,
        timeout: float = 30.0,
        **httpx_kwargs: Any,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.store = store
        self.policy = policy
        self.tool = tool
        self.secret = secret
        self.redactor = resolve_redactor(store, redactor)
        self._http = self._client_factory()(
            store,
            policy,
            redactor=self.redactor,
            base_url=self.base_url,
            timeout=timeout,
            **httpx_kwargs,
        )

    @staticmethod
    def _client_factory() -> Callable[..., Any]:
        raise NotImplementedError

    # -- public API (awaitable on AsyncN8nClient) ---------------------------------------

    def list_workflows(self, *, active: bool | None = None, limit: int = 100) -> Any:
        """All workflows (every page), optionally only active/inactive ones."""
        return self._all_pages("/workflows", {"active": _flag(active), "limit": limit})

    def get_workflow(self, workflow_id: str) -> Any:
        return self._call("GET", f"/workflows/{workflow_id}")

    def create_workflow(self, workflow: dict[str, Any]) -> Any:
        return self._call("POST", "/workflows", json=workflow)

    def delete_workflow(self, workflow_id: str) -> Any:
        return self._call("DELETE", f"/workflows/{workflow_id}")

    def activate_workflow(self, workflow_id: str) -> Any:
        return self._call("POST", f"/workflows/{workflow_id}/activate")

    def deactivate_workflow(self, workflow_id: str) -> Any:
        return self._call("POST", f"/workflows/{workflow_id}/deactivate")

    def list_executions(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> Any:
        params = {"workflowId": workflow_id, "status": status, "limit": limit}
        return self._all_pages("/executions", params)

    def trigger_webhook(
        self,
        path: str,
        json: Any = None,
        *,
        auth: WebhookAuth | None = None,
        method: str = "POST",
        test: bool = False,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``/webhook/<path>`` (``test=True``: ``/webhook-test/<path>``)."""
        return self._send(
            lambda: self._webhook(
                path, method=method, json=json, auth=auth, test=test, headers=headers, params=params
            )
        )

    # -- the shared core ----------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(lambda: self._api(method, path, **kwargs))

    def _placeholder(self, name: str) -> str:
        return placeholder(self.store, self.redactor, name)

    @contextlib.contextmanager
    def _exchange(self, method: str, path: str) -> Iterator[None]:
        """The scope of one request: the acting tool, and transport errors as N8nError."""
        scope = tool_context(self.tool) if self.tool else contextlib.nullcontext()
        with scope:
            try:
                yield
            except httpx.TransportError as exc:
                raise N8nError(
                    f"n8n at {self._shown(self.base_url)} could not be reached "
                    f"({method} {self._shown(path)}): {type(exc).__name__}"
                ) from None

    def _api(self, method: str, path: str, **kwargs: Any) -> _Prepared:
        headers = {API_KEY_HEADER: self._placeholder(self.secret), "Accept": "application/json"}
        params = {k: v for k, v in (kwargs.pop("params", None) or {}).items() if v is not None}
        return method, f"/api/v1{path}", {"headers": headers, "params": params or None, **kwargs}

    def _webhook(
        self,
        path: str,
        *,
        method: str,
        json: Any,
        auth: WebhookAuth | None,
        test: bool,
        headers: dict[str, str] | None,
        params: dict[str, Any] | None,
    ) -> _Prepared:
        headers = dict(headers or {})
        basic = None
        if isinstance(auth, HeaderAuth):
            headers[auth.header] = self._placeholder(auth.secret)
        elif isinstance(auth, BasicAuth):
            # The placeholder rides inside the Basic blob; the edge decodes and fills it.
            basic = httpx.BasicAuth(auth.user, self._placeholder(auth.secret))
        elif isinstance(auth, JwtAuth):
            headers["Authorization"] = f"Bearer {self._placeholder(auth.secret)}"
        elif auth is not None:
            raise TypeError("auth must be HeaderAuth, BasicAuth, JwtAuth or None")
        prefix = "/webhook-test/" if test else "/webhook/"
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if json is not None:
            kwargs["json"] = json
        if basic is not None:
            kwargs["auth"] = basic
        return method, prefix + path.lstrip("/"), kwargs

    def _result(self, response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code >= 400:
            raise N8nError(
                f"n8n {method} {self._shown(path)} failed: HTTP {response.status_code}: "
                f"{self._message(response)}",
                status=response.status_code,
            )
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def _shown(self, url: str) -> str:
        """``url`` for a message: no user info or query (where credentials ride), and
        redacted (a value pasted into a webhook path)."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return self.redactor.redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))

    def _message(self, response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            text = response.text
        else:
            text = data.get("message", "") if isinstance(data, dict) else ""
            text = text or str(data)
        # The edge already scrubbed the body; this also catches pattern-shaped secrets.
        return self.redactor.redact(text.strip()[:300]) or "(empty response)"


class _Pages:
    """A paged listing being collected: ``query`` asks for the next page (None: done)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.items: list[dict[str, Any]] = []
        self.query: dict[str, Any] | None = {**params, "cursor": None}

    def add(self, page: dict[str, Any]) -> None:
        self.items.extend(page.get("data", []))
        cursor = page.get("nextCursor")
        self.query = {**self.params, "cursor": cursor} if cursor else None


class N8nClient(_Base):
    """Sync n8n client. ``tool`` names the tool its calls act as (else the ambient one)."""

    @staticmethod
    def _client_factory() -> Callable[..., Any]:
        from keyguard.edge import guarded_client

        return guarded_client

    def _send(self, prepare: Callable[[], _Prepared]) -> Any:
        method, path, kwargs = prepare()
        with self._exchange(method, path):
            response = self._http.request(method, path, **kwargs)
        return self._result(response, method, path)

    def _all_pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        pages = _Pages(params)
        while pages.query is not None:
            pages.add(self._call("GET", path, params=pages.query))
        return pages.items

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> N8nClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncN8nClient(_Base):
    """The async twin of ``N8nClient`` (same methods, awaited)."""

    @staticmethod
    def _client_factory() -> Callable[..., Any]:
        from keyguard.edge import async_guarded_client

        return async_guarded_client

    async def _send(self, prepare: Callable[[], _Prepared]) -> Any:
        method, path, kwargs = prepare()
        with self._exchange(method, path):
            response = await self._http.request(method, path, **kwargs)
        return self._result(response, method, path)

    async def _all_pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        pages = _Pages(params)
        while pages.query is not None:
            pages.add(await self._call("GET", path, params=pages.query))
        return pages.items

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncN8nClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()
