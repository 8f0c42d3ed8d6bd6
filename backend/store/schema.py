"""The history file's SQLite schema, version by version, and the upgrade from any older one.

Each version only adds (a column, a table): a file written by an older Hearth opens at once,
its rows as they were. ``migrate`` runs inside ``ChatStore``'s opening transaction.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

# AUTOINCREMENT: ids are never reused, so a late write for a deleted message (a reply still
# streaming into a chat the person just deleted) can never land in a newer message.
_SCHEMA_V1 = """
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
    stats TEXT  -- JSON object or NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX conversations_by_recency ON conversations(updated_at DESC, id DESC);
"""
# v2: each chat keeps its own system prompt (NULL: a chat written by v1, which used the global
# one; the app records the prompt it uses the first time it opens such a chat). Adding a
# nullable column rewrites nothing, so a v1 file opens at once and a v1 Hearth's rows stay as
# they were.
_V2 = "ALTER TABLE conversations ADD COLUMN system_prompt TEXT"
# v3: images attached to messages, by content hash (the files live in ``images.py``'s folder).
# A table of its own, not a column: "is this image still used anywhere?" is one indexed query
# when a chat is deleted, and a v2 file gains it without a row being rewritten.
_V3 = """
CREATE TABLE message_images (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_images_by_digest ON message_images(digest)
"""


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a file at ``version`` (0: new) up to ``SCHEMA_VERSION``, statement by statement
    (``executescript()`` would COMMIT the caller's transaction)."""
    steps = [(1, _SCHEMA_V1), (2, _V2), (3, _V3)]
    for target, script in steps:
        if version < target:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
