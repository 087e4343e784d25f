"""Which tool is acting: a context variable read by the policy decisions at the edge."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_current_tool: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "keyguard_tool", default=None
)


def current_tool() -> str | None:
    """The tool named by the innermost ``tool_context``, or ``None`` outside any."""
    return _current_tool.get()


@contextmanager
def tool_context(tool: str) -> Iterator[str]:
    """``with tool_context("code_interpreter"): ...`` marks calls as made by that tool.

    A context variable follows both threads' own contexts and asyncio tasks, so the same
    ``with`` works in sync and async code.
    """
    token = _current_tool.set(tool)
    try:
        yield tool
    finally:
        _current_tool.reset(token)
