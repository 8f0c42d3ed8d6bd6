"""A chat history written by the first schema (v1) opens in this Hearth: every chat and message
kept, each chat given its own system prompt and model, and the file upgraded in place."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from backend.store import ChatStore
from backend.store.history import SCHEMA_VERSION

# The v1 schema exactly as the first Hearth created it (backend/store/history.py, v1).
V1_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    title_is_custom INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    model_id TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    stats TEXT
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX conversations_by_recency ON conversations(updated_at DESC, id DESC);
PRAGMA user_version = 1;
"""


def _v1_file(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO conversations (title, title_is_custom, created_at, updated_at, "
               "model_id) VALUES ('Old chat', 1, 100.0, 200.0, 'smollm2:135m')")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at, state, stats) "
               "VALUES (1, 'user', 'Hello from v1', 101.0, 'complete', NULL)")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at, state, stats) "
               "VALUES (1, 'assistant', 'Hi!', 102.0, 'streaming', ?)",
               (json.dumps({"completion_tokens": 2}),))
    db.commit()
    db.close()


def test_a_v1_history_opens_with_everything_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    _v1_file(path)
    store = ChatStore(path)
    try:
        (conv,) = store.list_conversations()
        assert (conv.title, conv.title_is_custom, conv.model_id) == ("Old chat", True,
                                                                     "smollm2:135m")
        assert conv.system_prompt is None  # v1 had no per-chat prompt: the app decides
        messages = store.messages(conv.id)
        assert [(m.role, m.content, m.state) for m in messages] == [
            ("user", "Hello from v1", "complete"), ("assistant", "Hi!", "interrupted")]
        assert messages[1].stats == {"completion_tokens": 2}
        # The upgraded chat takes a prompt of its own; new chats are created with one.
        store.set_system_prompt(conv.id, "Be brief.")
        new = store.create_conversation("other:1b", system_prompt="Speak French.")
        assert store.conversation(conv.id).system_prompt == "Be brief."
        assert store.conversation(new.id).system_prompt == "Speak French."
        assert store.list_conversations("hello from")[0].id == conv.id
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
    reopened = ChatStore(path)  # opening an upgraded file again changes nothing
    try:
        assert reopened.conversation(1).system_prompt == "Be brief."
        assert "Be brief." in reopened.export_markdown(1)
        assert reopened.export_json(1)["system_prompt"] == "Be brief."
    finally:
        reopened.close()
