"""Saving a tool-using reply in the chat history, with the history's schema as it is.

Calls and results are ordinary messages (so every reader of the history, the exports and
``prompt_messages`` see them in order):

- each step's reply is an ``assistant`` message; one that called tools keeps its calls in its
  ``stats`` (``"tool_calls": [{"id", "name", "arguments"}]``) beside the usual figures;
- each call's result is a ``tool`` message: the text the model was given, and in ``stats`` the
  call's id, tool, server, arguments and status (ok, error, denied, cancelled, timeout).

``ToolChatRecorder`` does this from the events of a ``ToolChat``, for the window and
``hearth run --tools`` alike; text is saved as it streams (``ReplyRecorder``), so a reply
cut off by a crash keeps all but its last quarter second.

Threading: feed one recorder from one task; the store is thread-safe.
"""

from __future__ import annotations

from typing import Any

from backend.application.tool_events import ToolCallFinished, ToolTurn
from backend.engine.types import Finished, TextDelta
from backend.store import ChatStore, ReplyRecorder

# A reply's finish reason → its state in the history (as the window records it).
STATE_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "stopped",
                    "error": "error"}


def reply_stats(final: Finished, model: str) -> dict[str, Any]:
    """What the history keeps with a reply (the window's footer shows them)."""
    usage = final.usage
    stats: dict[str, Any] = {
        "model": model, "finish_reason": final.finish_reason,
        "prompt_tokens": usage.prompt_tokens, "cached_prompt_tokens": usage.cached_prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "time_to_first_token_s": usage.time_to_first_token_s,
        "decode_tokens_per_s": usage.decode_tokens_per_s,
        "messages_dropped": usage.messages_dropped}
    if final.error is not None:
        stats["error"] = final.error.user_message
    return stats


def result_stats(event: ToolCallFinished) -> dict[str, Any]:
    return {"tool_call_id": event.call_id, "tool": event.tool, "server": event.server,
            "arguments": event.arguments, "status": event.status,
            "truncated": event.truncated}


class ToolChatRecorder:
    def __init__(self, store: ChatStore, conversation_id: int, model: str, *,
                 reply: tuple[int, ReplyRecorder] | None = None) -> None:
        """``reply``: the first step's message, already made (the window's placeholder)."""
        self._store = store
        self._conversation = conversation_id
        self._model = model
        self._message_id: int | None = reply[0] if reply else None  # the step's reply
        self._recorder: ReplyRecorder | None = reply[1] if reply else None

    def _reply(self) -> ReplyRecorder:
        if self._recorder is None:
            message = self._store.add_message(self._conversation, "assistant", "",
                                              state="streaming")
            self._message_id = message.id
            self._recorder = ReplyRecorder(self._store, message.id)
        return self._recorder

    def record(self, event: object) -> None:
        """Save what ``event`` adds (other events are ignored)."""
        if isinstance(event, TextDelta):
            self._reply().append(event.text)
        elif isinstance(event, ToolTurn):
            self._reply()
            assert self._message_id is not None
            stats = reply_stats(event.finished, self._model) | {"tool_calls": list(event.calls)}
            # The text outside the calls (the call markup was never shown or kept).
            self._store.update_message(self._message_id, content=event.content,
                                       state="complete", stats=stats)
            self._message_id = self._recorder = None
        elif isinstance(event, ToolCallFinished):
            self._store.add_message(self._conversation, "tool", event.result,
                                    state="complete", stats=result_stats(event))
        elif isinstance(event, Finished):
            self._reply().finish(STATE_FOR_REASON.get(event.finish_reason, "complete"),
                                 reply_stats(event, self._model))
            self._message_id = self._recorder = None

    def append(self, text: str) -> None:
        """Text of the step being written (as a ``TextDelta`` would add it)."""
        self._reply().append(text)

    def finish(self, state: str, stats: dict[str, Any] | None = None) -> None:
        """The last step ended with ``state`` and the front end's ``stats``."""
        self._reply().finish(state, stats)
        self._message_id = self._recorder = None

    def abort(self, state: str = "stopped") -> None:
        """The reply ended without its ``Finished`` (Ctrl+C, an error): keep what came."""
        if self._recorder is not None:
            self._recorder.finish(state)
            self._message_id = self._recorder = None
