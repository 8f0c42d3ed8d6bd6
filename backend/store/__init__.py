"""Chat history on disk: ``ChatStore`` (SQLite, WAL) and ``ReplyRecorder`` (saves replies as
they stream)."""

from __future__ import annotations

from backend.store.history import (
    DEFAULT_TITLE,
    MESSAGE_STATES,
    ChatStore,
    Conversation,
    MessageState,
    StoredMessage,
    auto_title,
)
from backend.store.recorder import ReplyRecorder

__all__ = [
    "DEFAULT_TITLE",
    "MESSAGE_STATES",
    "ChatStore",
    "Conversation",
    "MessageState",
    "ReplyRecorder",
    "StoredMessage",
    "auto_title",
]
