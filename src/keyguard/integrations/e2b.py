"""Guarded E2B code-interpreter sandboxes.

``Sandbox.create(store, policy, tool="code_interpreter", ...)`` (and ``AsyncSandbox``)
wrap ``e2b_code_interpreter``'s classes:

* The E2B key reaches only the control plane, and only through the edge. The SDK is
  given the key's placeholder; the edge turns it into the value in ``X-API-KEY`` for the
  hosts the policy allows.
* ``envs`` (``create``, ``run_code``, ``commands.run``) go through
  ``keyguard.edge.sandbox_env``: a secret the tool's ``sandbox_env`` does not list is
  refused with ``PolicyViolation`` naming the variable, never silently dropped. Granted
  secrets given to ``create`` are *not* sent to the control plane (which is not the
  sandbox): they are added to every ``run_code``/``commands.run`` of that sandbox.
* Code that contains a loaded secret's value is refused: secrets enter through envs.
* Everything coming back is redacted before user code sees it: ``logs.stdout/stderr``,
  every text form of each ``Result`` (a binary image is kept unless a known value is
  inside it, then dropped), ``error.name/value/traceback``, and the ``on_stdout``,
  ``on_stderr``, ``on_result``, ``on_error`` callbacks, streaming-safe (a key split
  across two output chunks is still caught; the held-back tail is delivered at the end).

Why hook ``get_transport`` of ``e2b.api.client_sync`` / ``client_async``: it is the one
factory every control-plane client (``get_api_client``, created per call) and the envd
HTTP client draw their httpx transport from, and those callers look it up at call time,
so wrapping its *return value* puts the edge exactly in front of E2B's sockets without
touching httpx globally or re-implementing any SDK call. The hook is process-wide but
scoped: it guards only calls made inside a guarded sandbox's own context (a context
variable), so plain e2b use elsewhere in the process is untouched, and
``uninstall_hook()`` restores the original functions. The code-interpreter's
``/execute`` client binds its own ``get_transport`` and stays outside the edge on
purpose: its body carries the granted env values, which belong in the sandbox and would
otherwise be refused as values sent to a host outside their ``inject.hosts``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from keyguard.context import tool_context
from keyguard.edge import sandbox_env
from keyguard.errors import PolicyViolation
from keyguard.integrations._common import placeholder, resolve_redactor

__all__ = [
    "DEFAULT_SECRET",
    "DEFAULT_TOOL",
    "AsyncSandbox",
    "Sandbox",
    "install_hook",
    "redact_execution",
    "uninstall_hook",
]

DEFAULT_SECRET = "E2B_API_KEY"  # noqa: S105 - a name, not a value
DEFAULT_TOOL = "code_interpreter"
_TEXT_FIELDS = ("text", "html", "markdown", "svg", "latex", "javascript")
_OBJECT_FIELDS = ("json", "data", "extra")
_BINARY_FIELDS = ("png", "jpeg", "pdf")


@dataclass(frozen=True)
class _Guard:
    store: Any
    policy: Any
    redactor: Any
    tool: str


_active: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "keyguard_e2b_guard", default=None
)
_hook_lock = threading.Lock()
_originals: dict[str, Callable[..., Any]] = {}


def install_hook() -> None:
    """Wrap e2b's transport factories (idempotent). Outside a guarded sandbox they return
    what they always did."""
    import e2b.api.client_async as client_async
    import e2b.api.client_sync as client_sync

    from keyguard.edge import AsyncGuardedTransport, GuardedTransport

    with _hook_lock:
        for module, edge_cls in (
            (client_sync, GuardedTransport),
            (client_async, AsyncGuardedTransport),
        ):
            if module.__name__ in _originals:
                continue
            original = module.get_transport
            _originals[module.__name__] = original

            def get_transport(
                *args: Any, _original: Any = original, _edge: type = edge_cls, **kwargs: Any
            ) -> Any:
                transport = _original(*args, **kwargs)
                guard = _active.get()
                if guard is None:
                    return transport
                return _edge(
                    transport, store=guard.store, policy=guard.policy, redactor=guard.redactor
                )

            module.get_transport = get_transport


def uninstall_hook() -> None:
    """Put e2b's original transport factories back."""
    import importlib

    with _hook_lock:
        for name, original in list(_originals.items()):
            importlib.import_module(name).get_transport = original
            del _originals[name]


@contextlib.contextmanager
def _guarded(guard: _Guard) -> Iterator[None]:
    token = _active.set(guard)
    try:
        with tool_context(guard.tool):
            yield
    finally:
        _active.reset(token)


# -- redaction of what comes back -------------------------------------------------------


def _redact_chunks(chunks: list[str], redactor: Any) -> list[str]:
    """Redact a list of output chunks as one stream (a value split across two is caught)."""
    stream = redactor.stream()
    out = [stream.feed(c) for c in chunks]
    tail = stream.flush()
    if tail:
        if out:
            out[-1] += tail
        else:
            out.append(tail)
    return out


def _binary_holds_secret(data: str, redactor: Any) -> bool:
    if redactor.contains_known(data):
        return True
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return False
    return bool(redactor.contains_known(raw))


def _redact_result(result: Any, redactor: Any) -> Any:
    for name in _TEXT_FIELDS:
        value = getattr(result, name, None)
        if isinstance(value, str):
            setattr(result, name, redactor.redact(value))
    for name in _OBJECT_FIELDS:
        value = getattr(result, name, None)
        if value is not None:
            setattr(result, name, redactor.redact_obj(value))
    for name in _BINARY_FIELDS:
        value = getattr(result, name, None)
        if isinstance(value, str) and _binary_holds_secret(value, redactor):
            setattr(result, name, None)  # a redacted image would be a corrupt image
    chart = getattr(result, "chart", None)
    if chart is not None and redactor.contains_known(repr(vars(chart))):
        result.chart = None
    return result


def _redact_error(error: Any, redactor: Any) -> Any:
    if error is not None:
        for name in ("name", "value", "traceback"):
            value = getattr(error, name, None)
            if isinstance(value, str):
                setattr(error, name, redactor.redact(value))
    return error


def redact_execution(execution: Any, redactor: Any) -> Any:
    """Redact an ``Execution`` in place (logs, results, error) and return it."""
    execution.logs.stdout = _redact_chunks(list(execution.logs.stdout), redactor)
    execution.logs.stderr = _redact_chunks(list(execution.logs.stderr), redactor)
    for result in execution.results:
        _redact_result(result, redactor)
    _redact_error(execution.error, redactor)
    return execution


class _OutputCallbacks:
    """The four ``run_code`` callbacks, redacted before the user's run; stdout/stderr
    through streaming redactors whose held tail is delivered by ``finish``."""

    def __init__(self, redactor: Any, handlers: dict[str, Any]) -> None:
        self.redactor = redactor
        self.handlers = handlers
        self.streams = {name: redactor.stream() for name in ("on_stdout", "on_stderr")}
        self.last: dict[str, Any] = {}

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("on_stdout", "on_stderr"):
            if self.handlers.get(name) is not None:
                out[name] = self._output(name)
        if self.handlers.get("on_result") is not None:
            out["on_result"] = lambda r: self.handlers["on_result"](
                _redact_result(r, self.redactor)
            )
        if self.handlers.get("on_error") is not None:
            out["on_error"] = lambda e: self.handlers["on_error"](_redact_error(e, self.redactor))
        return out

    def _output(self, name: str) -> Callable[[Any], Any]:
        def handler(message: Any) -> Any:
            self.last[name] = message
            text = self.streams[name].feed(message.line)
            if not text:
                return None
            return self.handlers[name](_message_like(message, text))

        return handler

    def finish(self) -> list[Any]:
        """Deliver the held tails; returns what the handlers returned (awaitables too)."""
        results = []
        for name, stream in self.streams.items():
            tail = stream.flush()
            if tail and self.handlers.get(name) is not None and name in self.last:
                results.append(self.handlers[name](_message_like(self.last[name], tail)))
        return results


def _message_like(message: Any, line: str) -> Any:
    return type(message)(line, message.timestamp, message.error)


class _CommandCallbacks:
    """``commands.run``'s ``on_stdout``/``on_stderr`` take plain strings."""

    def __init__(self, redactor: Any, handlers: dict[str, Any]) -> None:
        self.handlers = {k: v for k, v in handlers.items() if v is not None}
        self.streams = {name: redactor.stream() for name in self.handlers}

    def kwargs(self) -> dict[str, Any]:
        def make(name: str) -> Callable[[str], Any]:
            def handler(text: str) -> Any:
                out = self.streams[name].feed(text)
                return self.handlers[name](out) if out else None

            return handler

        return {name: make(name) for name in self.handlers}

    def finish(self) -> list[Any]:
        results = []
        for name, stream in self.streams.items():
            tail = stream.flush()
            if tail:
                results.append(self.handlers[name](tail))
        return results


def _redact_command_result(result: Any, redactor: Any) -> Any:
    for name in ("stdout", "stderr", "error"):
        value = getattr(result, name, None)
        if isinstance(value, str):
            setattr(result, name, redactor.redact(value))
    return result


# -- the wrappers -----------------------------------------------------------------------


def _make_guard(store: Any, policy: Any, tool: str, redactor: Any) -> _Guard:
    install_hook()
    return _Guard(store, policy, resolve_redactor(store, redactor), tool)


def _create_opts(
    guard: _Guard, secret: str, envs: Mapping[str, Any] | None, opts: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(keyword arguments for the SDK's create, granted secret env for later calls)."""
    if opts.get("api_key") is not None:
        raise ValueError("api_key= is not accepted: the E2B key comes from the store")
    key = placeholder(guard.store, guard.redactor, secret)
    plain, granted = _split_env(guard, envs)
    return {**opts, "api_key": key, "envs": plain or None}, granted


def _split_env(
    guard: _Guard, envs: Mapping[str, Any] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Filter create's envs; secrets (granted) are kept back from the control plane."""
    if not envs:
        return {}, {}
    filtered = sandbox_env(
        guard.policy, guard.tool, guard.store, dict(envs), redactor=guard.redactor
    )
    secret_vars = {
        var
        for var, value in filtered.items()
        if guard.redactor.contains_known(value) or var in getattr(guard.policy, "secrets", {})
    }
    plain = {k: v for k, v in filtered.items() if k not in secret_vars}
    return plain, {k: v for k, v in filtered.items() if k in secret_vars}


@dataclass
class _Step:
    """One SDK call as the sync and async wrappers both drive it: ``call`` is made inside
    the guard; then, unless ``done`` is None (the result is returned as it is), the held
    tails of ``callbacks`` are delivered and ``done(result)`` is returned."""

    guard: _Guard
    call: Callable[[], Any]
    done: Callable[[Any], Any] | None = None
    callbacks: _OutputCallbacks | _CommandCallbacks | None = None


def _drive_sync(prepare: Callable[[], _Step]) -> Any:
    step = prepare()
    with _guarded(step.guard):
        result = step.call()
    if step.done is None:
        return result
    if step.callbacks is not None:
        step.callbacks.finish()
    return step.done(result)


async def _drive_async(prepare: Callable[[], _Step]) -> Any:
    step = prepare()
    with _guarded(step.guard):
        result = step.call()
        if inspect.isawaitable(result):
            result = await result
    if step.done is None:
        return result
    for pending in step.callbacks.finish() if step.callbacks is not None else ():
        if inspect.isawaitable(pending):
            await pending
    return step.done(result)


class _Base:
    """Everything the sync and async sandboxes share; ``_drive`` (``_drive_sync`` or
    ``_drive_async``) is the one place they differ: whether the SDK's answer is awaited.
    Each method prepares its ``_Step`` lazily, so on ``AsyncSandbox`` nothing happens
    until the call is awaited."""

    _drive: Callable[[Callable[[], _Step]], Any]
    _sdk_class: str  # the e2b_code_interpreter class wrapped

    def __init__(self, inner: Any, guard: _Guard, granted_env: dict[str, str]) -> None:
        self._inner = inner
        self._guard = guard
        self._granted_env = granted_env

    @classmethod
    def create(
        cls,
        store: Any,
        policy: Any,
        *,
        tool: str = DEFAULT_TOOL,
        redactor: Any = None,
        secret: str = DEFAULT_SECRET,
        envs: Mapping[str, Any] | None = None,
        **opts: Any,
    ) -> Any:
        """The guarded sandbox (awaitable on ``AsyncSandbox``). ``opts`` are
        ``e2b_code_interpreter.Sandbox.create``'s (template, timeout, api_url, sandbox_url,
        domain...), except ``api_key``."""

        def prepare() -> _Step:
            import e2b_code_interpreter

            sdk = getattr(e2b_code_interpreter, cls._sdk_class)
            guard = _make_guard(store, policy, tool, redactor)
            with _guarded(guard):
                kwargs, granted = _create_opts(guard, secret, envs, opts)
            return _Step(
                guard,
                lambda: sdk.create(**kwargs),
                done=lambda inner: cls(inner, guard, granted),
            )

        return cls._drive(prepare)

    def run_code(
        self,
        code: str,
        language: str | None = None,
        context: Any = None,
        on_stdout: Callable[[Any], Any] | None = None,
        on_stderr: Callable[[Any], Any] | None = None,
        on_result: Callable[[Any], Any] | None = None,
        on_error: Callable[[Any], Any] | None = None,
        envs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        request_timeout: float | None = None,
    ) -> Any:
        """``Sandbox.run_code`` with envs filtered and everything returned redacted
        (awaitable on ``AsyncSandbox``)."""

        def prepare() -> _Step:
            self._check_code(code)
            env = self._env(envs)
            handlers = {
                "on_stdout": on_stdout,
                "on_stderr": on_stderr,
                "on_result": on_result,
                "on_error": on_error,
            }
            callbacks = _OutputCallbacks(self._guard.redactor, handlers)
            kwargs = {
                "language": language,
                "context": context,
                "envs": env,
                "timeout": timeout,
                "request_timeout": request_timeout,
                **callbacks.kwargs(),
            }
            return _Step(
                self._guard,
                lambda: self._inner.run_code(code, **kwargs),
                done=lambda execution: redact_execution(execution, self._guard.redactor),
                callbacks=callbacks,
            )

        return self._drive(prepare)

    @property
    def commands(self) -> _Commands:
        return _Commands(self)

    def kill(self, **opts: Any) -> Any:
        return self._guarded_call(self._inner.kill, (), opts)

    def _guarded_call(self, attr: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._drive(lambda: _Step(self._guard, lambda: attr(*args, **kwargs)))

    def __getattr__(self, name: str) -> Any:
        # Everything else (files, set_timeout, is_running, ...) runs inside the guard.
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._guarded_call(attr, args, kwargs)

        return call

    def _env(self, envs: Mapping[str, Any] | None) -> dict[str, str] | None:
        if not envs and not self._granted_env:
            return None
        filtered = sandbox_env(
            self._guard.policy,
            self._guard.tool,
            self._guard.store,
            dict(envs or {}),
            redactor=self._guard.redactor,
        )
        return {**self._granted_env, **filtered}

    def _check_code(self, code: str) -> None:
        names = self._guard.redactor.contains_known(code)
        if names:
            raise PolicyViolation(
                f"code for the {self._guard.tool} sandbox contains the value of "
                f"{', '.join(sorted(names))}; refer to it through an environment variable "
                f"granted in tools.{self._guard.tool}.sandbox_env instead"
            )

    @property
    def sandbox_id(self) -> str:
        return self._inner.sandbox_id

    @property
    def inner(self) -> Any:
        """The e2b sandbox object (calls made on it directly are not guarded)."""
        return self._inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sandbox_id!r}, tool={self._guard.tool!r})"


class _Commands:
    def __init__(self, sandbox: _Base) -> None:
        self._sandbox = sandbox

    def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: Mapping[str, Any] | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``commands.run`` with envs filtered and the output redacted (foreground only:
        a background handle's later output is the caller's to redact). Awaitable on
        ``AsyncSandbox``."""
        sbx = self._sandbox

        def prepare() -> _Step:
            sbx._check_code(cmd)
            env = sbx._env(envs)
            callbacks = _CommandCallbacks(
                sbx._guard.redactor, {"on_stdout": on_stdout, "on_stderr": on_stderr}
            )
            run_kwargs = {**callbacks.kwargs(), **kwargs}
            return _Step(
                sbx._guard,
                lambda: sbx._inner.commands.run(cmd, background=background, envs=env, **run_kwargs),
                done=None
                if background
                else lambda result: _redact_command_result(result, sbx._guard.redactor),
                callbacks=callbacks,
            )

        return sbx._drive(prepare)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox._inner.commands, name)


class Sandbox(_Base):
    """A guarded ``e2b_code_interpreter.Sandbox``. Create it with ``Sandbox.create``."""

    _drive = staticmethod(_drive_sync)
    _sdk_class = "Sandbox"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class AsyncSandbox(_Base):
    """A guarded ``e2b_code_interpreter.AsyncSandbox``: ``await AsyncSandbox.create(...)``;
    its methods are awaited."""

    _drive = staticmethod(_drive_async)
    _sdk_class = "AsyncSandbox"

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
