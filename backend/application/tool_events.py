"""The events of a reply that may call tools, as every front end reads them.

``Hearth.chat_with_tools`` streams, in order: ``ToolsOffered`` once; then, for each step, the
step's text (``TextDelta``, with any call markup held back) and either ``ToolTurn`` followed by
a ``ToolCallRequested`` / ``ToolCallFinished`` pair per call, or, for the last step, its
``Finished``. A GUI draws a ``ToolCallRequested`` as a card with Allow once / Always / Deny
(when ``needs_approval``) and a ``ToolCallFinished`` as its folded result; ``hearth run
--tools`` prints them. Frozen values: they cross from the chat's loop to a GUI's widgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from backend.engine.types import Finished
from backend.errors import BackendError

#: The person's answer to a call: run it this once, run this tool from now on without
#: asking, or don't run it (the model is told it was denied).
Decision = Literal["once", "always", "deny"]
CallStatus = Literal["ok", "error", "denied", "cancelled", "timeout"]


@dataclass(frozen=True)
class ToolsOffered:
    """The tools this reply may call (names), and why others are missing (sentences)."""

    tools: tuple[str, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolTurn:
    """A step's reply that called tools: its text outside the calls and the calls, to keep as
    the assistant's turn (``tool_records.py`` saves it)."""

    step: int
    content: str
    calls: tuple[dict[str, Any], ...]  # {"id", "name", "arguments": {...}}
    finished: Finished  # this step's end and usage


@dataclass(frozen=True)
class ToolCallRequested:
    """The model asked to run a tool. With ``needs_approval`` the chat waits for a
    ``Decision`` (``ToolChat.decide``, or the ``approve`` callback)."""

    call_id: str
    tool: str
    server: str
    arguments: dict[str, Any]
    needs_approval: bool
    step: int


@dataclass(frozen=True)
class ToolCallFinished:
    """A call ended: ``result`` is what the model is told (the tool's output, or why there
    is none), shown folded under the call's card."""

    call_id: str
    tool: str
    server: str
    arguments: dict[str, Any]
    status: CallStatus
    result: str
    truncated: bool = False
    error: BackendError | None = None


ToolChatEvent = ToolsOffered | ToolTurn | ToolCallRequested | ToolCallFinished
