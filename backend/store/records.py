"""The values the chat history hands out: conversations and their messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

MessageState = Literal["complete", "streaming", "stopped", "interrupted", "error"]
MESSAGE_STATES: frozenset[str] = frozenset(get_args(MessageState))


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float  # seconds since the epoch
    updated_at: float  # bumped by every new or changed message
    model_id: str | None
    title_is_custom: bool  # renamed by the person: no automatic title replaces it
    # This chat's instructions to the model; None: written before chats had their own (v1).
    system_prompt: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str
    content: str
    created_at: float
    state: str  # one of MESSAGE_STATES
    stats: dict[str, Any] | None
