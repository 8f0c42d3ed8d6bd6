"""A stored conversation as the messages a model should see: one function for every front end.

The GUI's chats and ``hearth run``'s terminal chat keep their turns in the same history
(``backend/store``); both turn them into prompt messages here. The system prompt is not a
stored turn: it is the chat's setting, given to the request builder as
``RequestOptions.system_prompt``; the overflow policy is applied by the engine (it knows the
token counts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backend.engine.types import ChatMessage
from backend.store.records import StoredMessage

#: Said between two user turns that are sent as one (a reply failed between them).
TURN_JOINER = "\n\n"
#: The result of a call that never ran to the end (Hearth closed during it).
NOT_RUN = "The call did not finish; it has no result."


def prompt_messages(stored: Iterable[StoredMessage]) -> tuple[ChatMessage, ...]:
    """The stored turns the model should see: finished text only, roles alternating.

    Empty and non-chat turns are left out; a reply that failed or was interrupted before any
    text leaves two user turns in a row, which are sent as one (templates that insist on
    alternating roles would refuse them otherwise). A stopped or interrupted reply keeps the
    text it had: the person saw it, and the next turn may refer to it.

    Tool use is kept as the model made it: a reply that called tools (its calls in its
    ``stats``, see ``tool_records.py``) and then each call's result (a "tool" turn). A call
    whose result was never saved (Hearth closed mid-call) gets one saying so, since templates
    pair every call with an answer.
    """
    turns: list[ChatMessage] = []
    pending: dict[str, str] = {}  # call id → tool name, of calls not yet answered
    for message in stored:
        calls = stored_calls(message)
        if message.role == "tool":
            call_id = (message.stats or {}).get("tool_call_id")
            if call_id in pending:
                turns.append(ChatMessage("tool", message.content, tool_call_id=call_id,
                                         name=pending.pop(call_id)))
            continue
        _close_calls(turns, pending)
        if calls:
            turns.append(ChatMessage("assistant", message.content, tool_calls=calls))
            pending = {c["id"]: c["function"]["name"] for c in calls}
            continue
        if message.role not in ("user", "assistant") or not message.content.strip():
            continue
        if turns and turns[-1].role == message.role == "user":
            turns[-1] = ChatMessage("user", f"{turns[-1].content}{TURN_JOINER}{message.content}")
            continue
        turns.append(ChatMessage(message.role, message.content))  # type: ignore[arg-type]
    _close_calls(turns, pending)
    return tuple(turns)


def stored_calls(message: StoredMessage) -> tuple[dict[str, Any], ...]:
    """The tool calls an assistant turn made, as chat templates read them (HF's shape: the
    arguments as an object)."""
    if message.role != "assistant" or not message.stats:
        return ()
    calls = message.stats.get("tool_calls")
    if not isinstance(calls, list):
        return ()
    out = []
    for call in calls:
        if isinstance(call, dict) and isinstance(call.get("id"), str) \
                and isinstance(call.get("name"), str):
            arguments = call.get("arguments")
            out.append({"id": call["id"], "type": "function", "function": {
                "name": call["name"],
                "arguments": arguments if isinstance(arguments, dict) else {}}})
    return tuple(out)


def _close_calls(turns: list[ChatMessage], pending: dict[str, str]) -> None:
    for call_id, name in pending.items():
        turns.append(ChatMessage("tool", NOT_RUN, tool_call_id=call_id, name=name))
    pending.clear()
