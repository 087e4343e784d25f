"""The demo agent's tools (LangChain). No ``from __future__ import annotations`` here:
LangChain reads the ``Annotated[..., InjectedSecret(...)]`` hints at decoration time."""

from typing import Annotated, Any

from langchain_core.tools import BaseTool, tool

from keyguard.integrations.langchain import InjectedSecret


def make_tools(sandbox: Any) -> list[BaseTool]:
    """``web_search`` (wants the Gemini key, is not granted it) and ``run_code`` (runs
    Python in the guarded sandbox with the named secrets in its environment)."""

    @tool
    def web_search(query: str, key: Annotated[str, InjectedSecret("GEMINI_API_KEY")]) -> str:
        """Search the web."""
        return f"results for {query}"

    @tool
    def run_code(code: str, env: list[str]) -> str:
        """Run Python in the sandbox with the named secrets in its environment."""
        execution = sandbox.run_code(code, envs=dict.fromkeys(env))
        return "".join(execution.logs.stdout)

    return [web_search, run_code]
