"""The values the chat history hands out: conversations and their messages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
class StoredImage:
    """An image attached to a message: its content hash, its kind, and the file that holds it
    (under the data folder's ``images/``; the file may be missing if someone removed it)."""

    digest: str  # sha256 of the bytes, lower-case hex
    media_type: str  # image/png, image/jpeg, image/webp or image/gif (read from the bytes)
    path: Path


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str
    content: str
    created_at: float
    state: str  # one of MESSAGE_STATES
    stats: dict[str, Any] | None
    # Images the person attached to this message, in the order they were attached.
    images: tuple[StoredImage, ...] = ()
