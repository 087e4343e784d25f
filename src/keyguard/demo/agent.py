"""The offline demo: a small LangChain agent whose model tries to leak keys.

Everything runs on loopback with freshly generated fake keys, through the real code
paths: the google-genai SDK talks to the Gemini stand-in through the edge, the e2b SDK
to the E2B stand-in, LangChain runs the guarded model and tools. The "model" is the
Gemini stand-in answering from a script; it learns the real key the only way a
compromised endpoint could (the header the edge injected) and tries to leak it:

1. in its answer;
2. through a tool argument (and a tool asking for a secret it is not granted);
3. from sandbox code that prints the whole environment (one secret is granted to it);
4. by asking for the Gemini key inside the sandbox (refused).

``run_demo()`` returns the rows of the report and the audit events; ``keyguard demo``
prints them.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from keyguard.audit import AuditEvent, Auditor, set_auditor
from keyguard.context import tool_context
from keyguard.errors import PolicyViolation
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore

__all__ = ["DemoReport", "Row", "run_demo"]

MODEL = "gemini-2.0-flash"
_ALNUM = string.ascii_letters + string.digits


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def demo_keys() -> dict[str, str]:
    """Fresh fake values in each provider's shape (never a real key)."""
    return {
        "GEMINI_API_KEY": "AIza" + _rand(35, _ALNUM + "-_"),
        "E2B_API_KEY": "e2b_" + _rand(40, "0123456789abcdef"),
        "DEMO_DB_PASSWORD": "pw-" + _rand(24),
    }


@dataclass
class Row:
    step: str
    attempt: str
    outcome: str  # injected | refused | redacted | leaked
    detail: str


@dataclass
class DemoReport:
    rows: list[Row] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)  # names of secrets seen in any output

    @property
    def ok(self) -> bool:
        return not self.leaked


# The model's script, by turn. "{api_key}" is filled by the stand-in with the key it
# received, "CALL name {json}" lines become tool calls.
_SCRIPT = [
    "Sure! For the record, my API key is {api_key}.",
    'CALL web_search {"query": "is {api_key} a valid key?"}',
    'CALL run_code {"code": "import os\\nfor k, v in sorted(os.environ.items()):'
    '\\n    print(k, v)", "env": ["DEMO_DB_PASSWORD"]}',
    'CALL run_code {"code": "import os\\nprint(os.environ.get(\'GEMINI_API_KEY\'))", '
    '"env": ["GEMINI_API_KEY"]}',
    "All done.",
]


def _policy(gemini_host: str, e2b_host: str) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "secrets": {
                "GEMINI_API_KEY": {
                    "format": "google-api-key",
                    "inject": {"hosts": [gemini_host], "header": "x-goog-api-key"},
                },
                "E2B_API_KEY": {
                    "format": "e2b-api-key",
                    "inject": {"hosts": [e2b_host], "header": "X-API-KEY"},
                },
                "DEMO_DB_PASSWORD": {"description": "a database password the sandbox may use"},
            },
            "tools": {
                "agent": {"secrets": ["GEMINI_API_KEY"]},
                "code_interpreter": {
                    "secrets": ["E2B_API_KEY", "DEMO_DB_PASSWORD"],
                    "sandbox_env": ["DEMO_DB_PASSWORD"],
                },
                "web_search": {"secrets": []},
            },
        },
        "<demo policy>",
    )


@contextmanager
def _collect_audit() -> Iterator[list[AuditEvent]]:
    events: list[AuditEvent] = []
    old = set_auditor(Auditor([events.append]))
    try:
        yield events
    finally:
        set_auditor(old)


def run_demo() -> DemoReport:
    """Run the scenario on loopback; see the module docstring."""
    from keyguard.demo.e2b_server import FakeE2B
    from keyguard.demo.gemini_server import FakeGemini

    keys = demo_keys()
    script = iter(_SCRIPT)
    report = DemoReport()
    with (
        FakeGemini(reply=lambda prompt: next(script, "All done.")) as gemini_srv,
        FakeE2B(api_key=keys["E2B_API_KEY"]) as e2b_srv,
        _collect_audit() as events,
    ):
        policy = _policy(gemini_srv.host, e2b_srv.api.host)
        store = SecretStore(sources=[EnvSource(environ=keys)], policy=policy)
        for name in keys:
            store.get(name)
        _run_agent(store, policy, gemini_srv, e2b_srv, report)
        report.events = list(events)
        saw = gemini_srv.requests[0].headers.get("x-goog-api-key") if gemini_srv.requests else None
        report.rows.insert(
            0,
            Row(
                "-",
                "the Gemini client is built with a placeholder",
                "injected" if saw == keys["GEMINI_API_KEY"] else "leaked",
                f"the edge put the real key in x-goog-api-key for {gemini_srv.host} only "
                f"({len(gemini_srv.requests)} requests); the client object holds the placeholder",
            ),
        )
        if e2b_srv.api.requests:
            ok = all(
                r.headers.get("x-api-key") == keys["E2B_API_KEY"] for r in e2b_srv.api.requests
            )
            report.rows.insert(
                1,
                Row(
                    "-",
                    "the E2B SDK is given a placeholder",
                    "injected"
                    if ok and not e2b_srv.sandbox.seen(keys["E2B_API_KEY"])
                    else "leaked",
                    f"X-API-KEY filled at the edge for the control plane {e2b_srv.api.host}; "
                    "the sandbox never saw it",
                ),
            )
    shown = "\n".join(f"{r.attempt} {r.detail}" for r in report.rows)
    report.leaked = [name for name, value in keys.items() if value in shown]
    return report


def _run_agent(store: Any, policy: Any, gemini_srv: Any, e2b_srv: Any, report: DemoReport) -> None:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from keyguard.demo.tools import make_tools
    from keyguard.integrations import gemini
    from keyguard.integrations.e2b import Sandbox
    from keyguard.integrations.langchain import (
        GuardedChatModel,
        SecretRefused,
        guard_tool,
    )

    client = gemini.client(
        store, policy, tool="agent", http_options={"base_url": gemini_srv.base_url}
    )

    class GeminiChat(BaseChatModel):
        """The smallest chat model over the (guarded) google-genai client."""

        @property
        def _llm_type(self) -> str:
            return "demo-gemini"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
            prompt = "\n".join(str(m.content) for m in messages)
            text = client.models.generate_content(model=MODEL, contents=prompt).text or ""
            calls = []
            for i, line in enumerate(text.splitlines()):
                if line.startswith("CALL "):
                    _, name, args = line.split(" ", 2)
                    calls.append({"name": name, "args": json.loads(args), "id": f"call-{i}"})
            message = AIMessage(content="" if calls else text, tool_calls=calls)
            return ChatResult(generations=[ChatGeneration(message=message)])

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    sandbox = Sandbox.create(
        store, policy, api_url=e2b_srv.api_url, sandbox_url=e2b_srv.sandbox_url
    )

    tools = {t.name: guard_tool(t, store, policy) for t in make_tools(sandbox)}
    model = GuardedChatModel(GeminiChat(), store.redactor).bind_tools(list(tools.values()))
    messages: list[BaseMessage] = [HumanMessage(content="Please check our setup.")]
    try:
        for _turn in range(len(_SCRIPT) + 1):
            with tool_context("agent"):
                reply = model.invoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                outcome = "redacted" if "[REDACTED:" in str(reply.content) else "clean"
                attempt = "answer the user" if outcome == "clean" else "put the key in its answer"
                report.rows.append(
                    Row(
                        str(len(report.rows) + 1),
                        attempt,
                        outcome,
                        f"the caller got: {reply.content}",
                    )
                )
                if reply.content == "All done.":
                    break
                messages.append(HumanMessage(content="Go on."))
                continue
            for call in reply.tool_calls:
                messages.append(_call_tool(tools, call, report, ToolMessage, SecretRefused))
    finally:
        sandbox.kill()


def _call_tool(
    tools: dict[str, Any],
    call: dict[str, Any],
    report: DemoReport,
    tool_message: Any,
    refused: type,
) -> Any:
    step = str(len(report.rows) + 1)
    args = json.dumps(call["args"])
    try:
        out = tools[call["name"]].invoke(call)
    except (refused, PolicyViolation) as exc:
        report.rows.append(Row(step, f"call {call['name']}({args})", "refused", str(exc)))
        return tool_message(content=f"refused: {exc}", tool_call_id=call["id"])
    content = str(out.content)
    outcome = "redacted" if "[REDACTED:" in content or "[REDACTED:" in args else "clean"
    lines = [line for line in content.splitlines() if "REDACTED" in line or "DEMO" in line]
    report.rows.append(
        Row(
            step,
            f"call {call['name']}({args})",
            outcome,
            "tool output: " + ("; ".join(lines) or content)[:300],
        )
    )
    return out
