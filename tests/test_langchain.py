"""keyguard.integrations.langchain with langchain-core's fake chat models and real tools."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Annotated, Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import ToolException, tool
from pydantic import Field

from keyguard.errors import PolicyViolation
from keyguard.integrations.langchain import (
    AuditCallbackHandler,
    GuardedChatModel,
    InjectedSecret,
    SecretRefused,
    guard_tool,
)
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests.fakes import github_classic, google_api_key


@pytest.fixture
def keys() -> dict[str, str]:
    return {"GEMINI_API_KEY": google_api_key(), "GITHUB_TOKEN": github_classic()}


@pytest.fixture
def guard(keys: dict[str, str]) -> tuple[SecretStore, Policy]:
    policy = Policy.from_dict(
        {
            "version": 1,
            "secrets": {
                "GEMINI_API_KEY": {"inject": {"hosts": ["generativelanguage.googleapis.com"]}},
                "GITHUB_TOKEN": {"inject": {"hosts": ["api.github.com"]}},
            },
            "tools": {"github_lookup": {"secrets": ["GITHUB_TOKEN"]}},
        }
    )
    store = SecretStore(sources=[EnvSource(environ=keys)], policy=policy)
    for name in keys:
        store.get(name)
    return store, policy


class Recorder(BaseCallbackHandler):
    """Everything the callbacks are shown, as text."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.seen.append(str(messages))

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.seen.append(token)

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.seen.append(str(response))

    def on_tool_start(self, serialized: Any, input_str: str, **kw: Any) -> None:
        self.seen.append(input_str + str(kw.get("inputs")))

    def on_tool_end(self, output: Any, **kw: Any) -> None:
        self.seen.append(str(output))

    def on_tool_error(self, error: BaseException, **kw: Any) -> None:
        self.seen.append(str(error))


class ChunkyModel(BaseChatModel):
    """Answers ``reply``, streamed in random 1-3 character chunks; records its input."""

    reply: str
    received: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "chunky"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.received.append(" ".join(str(m.content) for m in messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.received.append(" ".join(str(m.content) for m in messages))
        rng = random.Random(7)
        i = 0
        while i < len(self.reply):
            n = rng.randint(1, 3)
            yield ChatGenerationChunk(message=AIMessageChunk(content=self.reply[i : i + n]))
            i += n

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[t.name for t in tools], **kwargs)


def test_streamed_key_in_tiny_chunks_never_shows(guard: Any, keys: dict[str, str]) -> None:
    store, _ = guard
    key = keys["GEMINI_API_KEY"]
    inner = ChunkyModel(reply=f"The key is {key}. Done.", received=[])
    recorder = Recorder()
    model = GuardedChatModel(inner, store.redactor)
    chunks = [c.content for c in model.stream("tell me", config={"callbacks": [recorder]})]
    assert "".join(chunks) == "The key is [REDACTED:GEMINI_API_KEY]. Done."
    assert len(chunks) > 5
    assert not any(key[:8] in c for c in chunks)
    assert recorder.seen and not any(key in s for s in recorder.seen)
    # ...also when the caller joins the chunks itself, and via astream
    assert key not in "".join(recorder.seen)

    async def collect() -> str:
        return "".join([str(c.content) async for c in model.astream("again")])

    assert asyncio.run(collect()) == "The key is [REDACTED:GEMINI_API_KEY]. Done."


def test_one_character_chunks_with_fake_list_model(guard: Any, keys: dict[str, str]) -> None:
    store, _ = guard
    key = keys["GITHUB_TOKEN"]
    model = GuardedChatModel(FakeListChatModel(responses=[f"token={key}"]), store.redactor)
    streamed = list(model.stream("x"))
    assert len(streamed) > len("token=")
    assert "".join(str(c.content) for c in streamed) == "token=[REDACTED:GITHUB_TOKEN]"


def test_inputs_are_redacted_before_inner_model_and_callbacks(
    guard: Any, keys: dict[str, str]
) -> None:
    store, _ = guard
    key, gh = keys["GEMINI_API_KEY"], keys["GITHUB_TOKEN"]
    inner = ChunkyModel(reply="fine", received=[])
    recorder = Recorder()
    model = GuardedChatModel(inner, store.redactor)
    out = model.invoke(
        [SystemMessage(content=f"sys {gh}"), HumanMessage(content=f"my key {key}")],
        config={"callbacks": [recorder]},
    )
    assert out.content == "fine"
    assert inner.received and key not in inner.received[0] and gh not in inner.received[0]
    assert "[REDACTED:GEMINI_API_KEY]" in inner.received[0]
    assert not any(key in s or gh in s for s in recorder.seen)


def test_invoke_and_ainvoke_outputs_are_redacted(guard: Any, keys: dict[str, str]) -> None:
    store, _ = guard
    key = keys["GEMINI_API_KEY"]
    inner = GenericFakeChatModel(messages=iter([f"a {key}", f"b {key}"]))
    model = GuardedChatModel(inner, store.redactor)
    assert model.invoke("hi").content == "a [REDACTED:GEMINI_API_KEY]"
    assert asyncio.run(model.ainvoke("hi")).content == "b [REDACTED:GEMINI_API_KEY]"


def test_tool_call_arguments_are_redacted(guard: Any, keys: dict[str, str]) -> None:
    store, _ = guard
    gh = keys["GITHUB_TOKEN"]
    leak = AIMessage(
        content="", tool_calls=[{"name": "post", "args": {"body": f"token {gh}"}, "id": "c1"}]
    )
    model = GuardedChatModel(GenericFakeChatModel(messages=iter([leak])), store.redactor)
    out = model.invoke("go")
    assert out.tool_calls[0]["args"] == {"body": "token [REDACTED:GITHUB_TOKEN]"}


def test_bind_tools_keeps_the_guard(guard: Any, keys: dict[str, str]) -> None:
    store, _ = guard
    key = keys["GEMINI_API_KEY"]

    @tool
    def noop(x: int) -> int:
        """Return x."""
        return x

    inner = ChunkyModel(reply=f"k {key}", received=[])
    bound = GuardedChatModel(inner, store.redactor).bind_tools([noop])
    assert isinstance(bound, GuardedChatModel)
    assert bound.invoke("x").content == "k [REDACTED:GEMINI_API_KEY]"


@tool
def github_lookup(repo: str, token: Annotated[str, InjectedSecret("GITHUB_TOKEN")]) -> str:
    """Look a repository up on GitHub."""
    if not token.startswith("ghp_"):
        raise ValueError("expected a real token")
    return f"{repo}: ok (used {token})"


@tool
def web_search(query: str, token: Annotated[str, InjectedSecret("GITHUB_TOKEN")]) -> str:
    """Search the web."""
    return f"{query} {token}"


@tool
def failing(query: str, token: Annotated[str, InjectedSecret("GITHUB_TOKEN")]) -> str:
    """Fail with the token in the message."""
    raise RuntimeError(f"auth failed for {token}")


def test_injected_secret_is_hidden_from_the_model_schema(guard: Any) -> None:
    store, policy = guard
    guarded = guard_tool(github_lookup, store, policy)
    schema = guarded.tool_call_schema.model_json_schema()
    assert list(schema["properties"]) == ["repo"]
    assert guarded.name == "github_lookup"


def test_granted_tool_gets_the_secret_and_its_output_is_redacted(
    guard: Any, keys: dict[str, str]
) -> None:
    store, policy = guard
    recorder = Recorder()
    guarded = guard_tool(github_lookup, store, policy)
    out = guarded.invoke({"repo": "octo/kit"}, config={"callbacks": [recorder]})
    assert out == "octo/kit: ok (used [REDACTED:GITHUB_TOKEN])"
    assert recorder.seen and not any(keys["GITHUB_TOKEN"] in s for s in recorder.seen)
    # a model's tool call works the same way and gives a ToolMessage
    msg = guarded.invoke(
        {"name": "github_lookup", "args": {"repo": "a/b"}, "id": "call-1", "type": "tool_call"}
    )
    assert msg.content == "a/b: ok (used [REDACTED:GITHUB_TOKEN])"
    assert asyncio.run(guarded.ainvoke({"repo": "x/y"})) == "x/y: ok (used [REDACTED:GITHUB_TOKEN])"


def test_tool_not_granted_is_refused_clearly(guard: Any, keys: dict[str, str]) -> None:
    store, policy = guard
    guarded = guard_tool(web_search, store, policy)
    with pytest.raises(SecretRefused) as err:
        guarded.invoke({"query": "q"})
    assert isinstance(err.value, PolicyViolation)
    assert "'web_search' is not granted secret GITHUB_TOKEN" in str(err.value)
    assert keys["GITHUB_TOKEN"] not in str(err.value)
    # with handle_tool_error the model gets the refusal as the tool's answer
    guarded.handle_tool_error = True
    assert "not granted secret GITHUB_TOKEN" in guarded.invoke({"query": "q"})


def test_exception_message_is_redacted(guard: Any, keys: dict[str, str]) -> None:
    store, policy = guard
    named = failing.model_copy(update={"name": "github_lookup"})  # granted name
    guarded = guard_tool(named, store, policy)
    with pytest.raises(ToolException) as err:
        guarded.invoke({"query": "q"})
    assert "auth failed for [REDACTED:GITHUB_TOKEN]" in str(err.value)
    assert keys["GITHUB_TOKEN"] not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_audit_handler_records_names_and_counts_never_content(
    guard: Any, keys: dict[str, str]
) -> None:
    store, policy = guard
    handler = AuditCallbackHandler()
    model = GuardedChatModel(
        ChunkyModel(reply=f"x {keys['GEMINI_API_KEY']}", received=[]), store.redactor
    )
    model.invoke("hello", config={"callbacks": [handler]})
    guard_tool(github_lookup, store, policy).invoke(
        {"repo": "a/b"}, config={"callbacks": [handler]}
    )
    events = [(r["event"], r["name"], r["phase"]) for r in handler.records]
    assert ("model_run", "GuardedChatModel", "start") in events
    assert ("model_run", "GuardedChatModel", "end") in events
    assert ("tool_run", "github_lookup", "start") in events and (
        "tool_run",
        "github_lookup",
        "end",
    ) in events
    text = str(handler.records)
    assert keys["GEMINI_API_KEY"] not in text and keys["GITHUB_TOKEN"] not in text
    assert "hello" not in text and "a/b" not in text
