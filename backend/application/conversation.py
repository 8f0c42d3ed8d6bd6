"""A stored conversation as the messages a model should see: one function for every front end.

The GUI's chats and ``hearth run``'s terminal chat keep their turns in the same history
(``backend/store``); both turn them into prompt messages here. The system prompt is not a
stored turn: it is the chat's setting, given to the request builder as
``RequestOptions.system_prompt``; the overflow policy is applied by the engine (it knows the
token counts).
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.engine.types import ChatMessage
from backend.store.records import StoredMessage

#: Said between two user turns that are sent as one (a reply failed between them).
TURN_JOINER = "\n\n"


def prompt_messages(stored: Iterable[StoredMessage]) -> tuple[ChatMessage, ...]:
    """The stored turns the model should see: finished text only, roles alternating.

    Empty and non-chat turns are left out; a reply that failed or was interrupted before any
    text leaves two user turns in a row, which are sent as one (templates that insist on
    alternating roles would refuse them otherwise). A stopped or interrupted reply keeps the
    text it had: the person saw it, and the next turn may refer to it.
    """
    turns: list[ChatMessage] = []
    for message in stored:
        if message.role not in ("user", "assistant") or not message.content.strip():
            continue
        if turns and turns[-1].role == message.role == "user":
            turns[-1] = ChatMessage("user", f"{turns[-1].content}{TURN_JOINER}{message.content}")
            continue
        turns.append(ChatMessage(message.role, message.content))  # type: ignore[arg-type]
    return tuple(turns)
