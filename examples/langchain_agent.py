"""A small LangChain tool loop under keyguard, offline.

    GITHUB_PERSONAL_ACCESS_TOKEN=... python examples/langchain_agent.py

The model (scripted here; use any chat model) is wrapped in GuardedChatModel; the tool
receives the token through InjectedSecret (never through the model) only because the
policy grants the tool `github` that secret. The tool carelessly echoes the token, the
model repeats the tool's answer: both come out redacted.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from keyguard import Policy, SecretStore
from keyguard.integrations.langchain import (
    AuditCallbackHandler,
    GuardedChatModel,
    InjectedSecret,
    guard_tool,
)


@tool
def github(repo: str, token: Annotated[str, InjectedSecret("GITHUB_PERSONAL_ACCESS_TOKEN")]) -> str:
    """Look up a GitHub repository."""
    return f"{repo} has 42 stars (debug: authenticated with {token})"


class ScriptedModel(BaseChatModel):
    """Calls the tool once, then repeats what the tool said."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if results:
            reply = AIMessage(content=f"The tool said: {results[-1].content}")
        else:
            call = {"name": "github", "args": {"repo": "octocat/hello-world"}, "id": "call-1"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def main() -> None:
    policy = Policy.load(os.environ.get("KEYGUARD_POLICY", "policies/keyguard.yaml"))
    store = SecretStore.from_policy(policy)
    audit = AuditCallbackHandler()
    tools = {"github": guard_tool(github, store, policy)}
    model = GuardedChatModel(ScriptedModel(), store.redactor).bind_tools(list(tools.values()))

    messages: list[BaseMessage] = [HumanMessage(content="How popular is octocat/hello-world?")]
    while True:
        reply = model.invoke(messages, config={"callbacks": [audit]})
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            messages.append(tools[call["name"]].invoke(call, config={"callbacks": [audit]}))
    print("answer:", reply.content)
    print("audit:", [(r["event"], r["name"], r["phase"]) for r in audit.records])


if __name__ == "__main__":
    main()
