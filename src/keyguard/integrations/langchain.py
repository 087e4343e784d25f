"""LangChain adapters: a redacting chat model, secret-injected tools, an audit handler.

* ``GuardedChatModel(inner, redactor)``: a ``BaseChatModel`` around any chat model (or a
  bound one). Inputs are redacted before the inner model sees them and before this
  model's callbacks are told about them; outputs (invoke, batch, stream, async) are
  redacted before the caller and the callbacks see them. Streams are redacted with a
  streaming redactor, so a key the model spells out one character per chunk is caught
  (the held-back tail arrives as one last chunk). Tool-call arguments are redacted too.
  ``bind_tools`` passes through to the inner model and keeps the guard. The inner model
  is called without the outer callbacks: handlers attached to the *inner* model itself
  would see its raw output, so attach them to the guard.
* ``InjectedSecret("NAME")``: ``Annotated[str, InjectedSecret("GITHUB_TOKEN")]`` marks a
  tool parameter that the model never sees (it is an ``InjectedToolArg``) and that
  ``guard_tool`` fills at call time if the policy grants the tool that secret. The value
  given is the real one (``placeholder=True``: the placeholder, for tools whose HTTP goes
  through the edge anyway).
* ``guard_tool(tool, store, policy, redactor=None)``: a tool with the same name and
  model-facing schema that checks the grants, runs the original inside
  ``tool_context(tool.name)``, and redacts its output and any exception message.
* ``AuditCallbackHandler``: audit records for model and tool runs: names, counts,
  durations, never content.
"""

from __future__ import annotations

import time
import typing
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, InjectedToolArg, ToolException
from pydantic import ConfigDict

from keyguard.audit import get_auditor
from keyguard.context import tool_context
from keyguard.errors import PolicyViolation
from keyguard.integrations._common import resolve_redactor

__all__ = [
    "AuditCallbackHandler",
    "GuardedChatModel",
    "InjectedSecret",
    "SecretRefused",
    "guard_tool",
]


# Inner models and wrapped tools run without the outer callbacks: those would see raw
# output (a tool's on_tool_end, a model's tokens). The guard's own run reports it redacted.
_NO_CALLBACKS: Any = {"callbacks": []}


# -- messages ---------------------------------------------------------------------------


def _redact_content(content: Any, redactor: Any) -> Any:
    return redactor.redact(content) if isinstance(content, str) else redactor.redact_obj(content)


def _redact_message(message: BaseMessage, redactor: Any) -> BaseMessage:
    update: dict[str, Any] = {"content": _redact_content(message.content, redactor)}
    if message.additional_kwargs:
        update["additional_kwargs"] = redactor.redact_obj(message.additional_kwargs)
    for name in ("tool_calls", "invalid_tool_calls"):
        calls = getattr(message, name, None)
        if calls:
            update[name] = redactor.redact_obj(list(calls))
    return message.model_copy(update=update)


def _redact_messages(messages: Sequence[BaseMessage], redactor: Any) -> list[BaseMessage]:
    return [_redact_message(m, redactor) for m in messages]


class _ChunkRedactor:
    """Streaming redaction of ``AIMessageChunk``s: text content and each tool call's
    argument string through their own streaming redactors."""

    def __init__(self, redactor: Any) -> None:
        self.redactor = redactor
        self.text = redactor.stream()
        self.args: dict[Any, Any] = {}

    def feed(self, chunk: Any) -> ChatGenerationChunk:
        """The inner model's chunk, redacted, as the generation chunk to hand on."""
        chunk = _as_chunk(chunk)
        update: dict[str, Any] = {}
        if isinstance(chunk.content, str):
            update["content"] = self.text.feed(chunk.content)
        else:
            update["content"] = self.redactor.redact_obj(chunk.content)
        if chunk.tool_call_chunks:
            calls = []
            for call in chunk.tool_call_chunks:
                call = dict(call)
                if isinstance(call.get("args"), str):
                    stream = self.args.setdefault(call.get("index"), self.redactor.stream())
                    call["args"] = stream.feed(call["args"])
                calls.append(call)
            update["tool_call_chunks"] = calls
            update["tool_calls"] = []  # re-derived from the chunks when they are merged
        if chunk.additional_kwargs:
            update["additional_kwargs"] = self.redactor.redact_obj(chunk.additional_kwargs)
        return ChatGenerationChunk(message=_rebuild_chunk(chunk, update))

    def finish(self) -> list[ChatGenerationChunk]:
        """The held tails, as one last generation chunk (none if nothing was held)."""
        text = self.text.flush()
        calls = []
        for index, stream in self.args.items():
            tail = stream.flush()
            if tail:
                calls.append(
                    {
                        "name": None,
                        "args": tail,
                        "id": None,
                        "index": index,
                        "type": "tool_call_chunk",
                    }
                )
        if not text and not calls:
            return []
        return [ChatGenerationChunk(message=AIMessageChunk(content=text, tool_call_chunks=calls))]


def _rebuild_chunk(chunk: AIMessageChunk, update: dict[str, Any]) -> AIMessageChunk:
    data = {**chunk.model_dump(exclude={"tool_calls", "invalid_tool_calls"}), **update}
    if "tool_calls" in update and not update["tool_calls"]:
        data.pop("tool_calls")
    return AIMessageChunk(**data)


# -- the chat model ---------------------------------------------------------------------


class GuardedChatModel(BaseChatModel):
    """``GuardedChatModel(inner=model, redactor=store.redactor)``; see the module docstring."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Runnable
    redactor: Any

    def __init__(self, inner: Runnable | None = None, redactor: Any = None, **kwargs: Any) -> None:
        if inner is not None:
            kwargs["inner"] = inner
        if redactor is not None:
            kwargs["redactor"] = redactor
        super().__init__(**kwargs)

    @property
    def _llm_type(self) -> str:
        return "keyguard-guarded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        inner = getattr(self.inner, "_identifying_params", {})
        return {"guarded": type(self.inner).__name__, **(inner if isinstance(inner, dict) else {})}

    # inputs: every public entry point converts its input here or calls generate
    def _convert_input(self, model_input: Any) -> PromptValue:
        value = super()._convert_input(model_input)
        return ChatPromptValue(messages=_redact_messages(value.to_messages(), self.redactor))

    def generate(self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any) -> Any:
        return super().generate(
            [_redact_messages(m, self.redactor) for m in messages], *args, **kwargs
        )

    async def agenerate(self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any) -> Any:
        redacted = [_redact_messages(m, self.redactor) for m in messages]
        return await super().agenerate(redacted, *args, **kwargs)

    def _inner_config(self) -> Any:
        # No outer callbacks for the inner run: they would see the raw output.
        return _NO_CALLBACKS

    def _result(self, message: Any) -> ChatResult:
        if not isinstance(message, BaseMessage):
            message = AIMessage(content=str(message))
        return ChatResult(
            generations=[ChatGeneration(message=_redact_message(message, self.redactor))]
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        messages = _redact_messages(messages, self.redactor)
        return self._result(
            self.inner.invoke(messages, config=self._inner_config(), stop=stop, **kwargs)
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        messages = _redact_messages(messages, self.redactor)
        message = await self.inner.ainvoke(
            messages, config=self._inner_config(), stop=stop, **kwargs
        )
        return self._result(message)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        messages = _redact_messages(messages, self.redactor)
        state = _ChunkRedactor(self.redactor)
        for chunk in self.inner.stream(messages, config=self._inner_config(), stop=stop, **kwargs):
            yield state.feed(chunk)
        yield from state.finish()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        messages = _redact_messages(messages, self.redactor)
        state = _ChunkRedactor(self.redactor)
        async for chunk in self.inner.astream(
            messages, config=self._inner_config(), stop=stop, **kwargs
        ):
            yield state.feed(chunk)
        for last in state.finish():
            yield last

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> GuardedChatModel:  # type: ignore[override]
        """Bind the tools on the inner model; the result is still guarded."""
        bind = getattr(self.inner, "bind_tools", None)
        if bind is None:
            raise NotImplementedError(f"{type(self.inner).__name__} does not support bind_tools")
        return GuardedChatModel(inner=bind(tools, **kwargs), redactor=self.redactor)


def _as_chunk(chunk: Any) -> AIMessageChunk:
    if isinstance(chunk, AIMessageChunk):
        return chunk
    if isinstance(chunk, BaseMessage):
        return AIMessageChunk(content=chunk.content)
    return AIMessageChunk(content=str(chunk))


# -- tools ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InjectedSecret(InjectedToolArg):
    """``Annotated[str, InjectedSecret("NAME")]``: filled by ``guard_tool`` at call time."""

    name: str
    placeholder: bool = False


class SecretRefused(ToolException, PolicyViolation):
    """The policy refused a secret to a tool: not granted to it, or refused by the edge or
    the sandbox while it ran. A ``ToolException``, so a tool with ``handle_tool_error``
    reports it to the model instead of raising."""


def _injected_secrets(tool: BaseTool) -> dict[str, InjectedSecret]:
    schema = tool.args_schema
    if schema is None or isinstance(schema, dict):
        return {}
    hints = typing.get_type_hints(schema, include_extras=True)
    out: dict[str, InjectedSecret] = {}
    for field, hint in hints.items():
        for meta in typing.get_args(hint)[1:]:
            if isinstance(meta, InjectedSecret):
                out[field] = meta
    return out


class GuardedTool(BaseTool):
    """What ``guard_tool`` returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    store: Any
    policy: Any
    redactor: Any
    secrets: dict[str, InjectedSecret]

    def _fill(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        filled = dict(kwargs)
        for param, spec in self.secrets.items():
            if not self.policy.tool_may_use(self.name, spec.name):
                get_auditor().emit(
                    "denied", spec.name, tool=self.name, detail=f"tool argument {param}"
                )
                raise SecretRefused(
                    f"tool {self.name!r} is not granted secret {spec.name} by the policy "
                    f"(add it to tools.{self.name}.secrets to allow it)"
                )
            secret = self.store.get(spec.name)
            filled[param] = secret.placeholder if spec.placeholder else secret.reveal()
        return filled

    def _clean_error(self, exc: Exception) -> ToolException:
        if isinstance(exc, SecretRefused):
            return exc
        if isinstance(exc, PolicyViolation):  # names secrets and hosts, redacted anyway
            return SecretRefused(self.redactor.redact(f"tool {self.name!r}: {exc}"))
        message = self.redactor.redact(f"{type(exc).__name__}: {exc}")
        return ToolException(f"tool {self.name!r} failed: {message}")

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("run_manager", None)
        with tool_context(self.name):
            filled = self._fill(kwargs)
            try:
                out = self.inner.invoke(filled, config=_NO_CALLBACKS)
            except Exception as exc:
                # ``from None``: the original exception's text holds what was redacted
                raise self._clean_error(exc) from None
        return self.redactor.redact_obj(out)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("run_manager", None)
        with tool_context(self.name):
            filled = self._fill(kwargs)
            try:
                out = await self.inner.ainvoke(filled, config=_NO_CALLBACKS)
            except Exception as exc:
                raise self._clean_error(exc) from None
        return self.redactor.redact_obj(out)


def guard_tool(tool: BaseTool, store: Any, policy: Any, redactor: Any = None) -> GuardedTool:
    """Wrap ``tool``: same name, description and model-facing schema (injected secrets
    stay hidden); grants checked, secrets filled, output and errors redacted."""
    return GuardedTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.tool_call_schema,
        return_direct=tool.return_direct,
        handle_tool_error=tool.handle_tool_error,
        inner=tool,
        store=store,
        policy=policy,
        redactor=resolve_redactor(store, redactor),
        secrets=_injected_secrets(tool),
    )


# -- audit ------------------------------------------------------------------------------


class AuditCallbackHandler(BaseCallbackHandler):
    """Records model and tool runs: what ran, for how long, with how many messages,
    generations or characters. Never content.

    Each record is a dict in ``records`` and, when the audit module knows the events
    ``model_run``/``tool_run``, an audit event through ``auditor`` (default: the
    process-wide one).
    """

    def __init__(self, auditor: Any = None) -> None:
        self.auditor = auditor
        self.records: list[dict[str, Any]] = []
        self._started: dict[Any, tuple[str, str, float]] = {}

    def _emit(
        self, event: str, name: str, phase: str, count: int | None = None, **extra: Any
    ) -> None:
        from keyguard import audit
        from keyguard.context import current_tool

        record = {
            "event": event,
            "name": name,
            "phase": phase,
            "count": count,
            "tool": current_tool(),
            **extra,
        }
        self.records.append(record)
        if event in audit.EVENTS:
            auditor = self.auditor if self.auditor is not None else audit.get_auditor()
            detail = f"{name} {phase}" + "".join(f" {k}={v}" for k, v in extra.items())
            auditor.emit(event, tool=record["tool"], count=count, detail=detail)

    @staticmethod
    def _name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str:
        serialized = serialized or {}
        return str(
            kwargs.get("name") or serialized.get("name") or (serialized.get("id") or ["?"])[-1]
        )

    def _end(self, run_id: Any, count: int | None, phase: str = "end", **extra: Any) -> None:
        event, name, started = self._started.pop(run_id, ("model_run", "?", time.monotonic()))
        ms = round((time.monotonic() - started) * 1000, 1)
        self._emit(event, name, phase, count, ms=ms, **extra)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: Any,
        **kwargs: Any,
    ) -> None:
        name = self._name(serialized, kwargs)
        self._started[run_id] = ("model_run", name, time.monotonic())
        self._emit("model_run", name, "start", sum(len(m) for m in messages))

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: Any, **kwargs: Any
    ) -> None:
        name = self._name(serialized, kwargs)
        self._started[run_id] = ("model_run", name, time.monotonic())
        self._emit("model_run", name, "start", len(prompts))

    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, sum(len(g) for g in response.generations))

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, None, "error", error=type(error).__name__)

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: Any, **kwargs: Any
    ) -> None:
        name = self._name(serialized, kwargs)
        self._started[run_id] = ("tool_run", name, time.monotonic())
        inputs = kwargs.get("inputs")
        self._emit("tool_run", name, "start", len(inputs) if isinstance(inputs, dict) else None)

    def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
        content = getattr(output, "content", output)
        self._end(run_id, len(str(content)))

    def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, None, "error", error=type(error).__name__)
