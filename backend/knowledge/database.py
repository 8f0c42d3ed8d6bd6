"""The knowledge index's SQLite file: schema, one connection, short transactions.

It is its own file (``knowledge.sqlite3`` beside ``history.sqlite3``), not tables in the chat
history: the history's schema belongs to the chat side, and an index that can always be
rebuilt from the files on disk should never put the conversations at risk (a damaged index
is moved aside and rebuilt; a damaged history is never touched).

Layout: collections hold folders and files; files hold chunks (an exact slice of the file's
text, its page and heading, and its vector as float32 bytes once embedded); ``chunks_fts`` is
an FTS5 index over the chunks' text and heading (Porter stemming, accents folded), kept in
step by triggers, so BM25 ranking is SQLite's. Vectors are scored in numpy
(``vector_index.py``): this Python's ``sqlite3`` is built without ``enable_load_extension``,
so sqlite-vec can't be loaded here, and an exact scan of float32 rows is ~10 ms per 100k
chunks anyway. ``chat_sources`` links a conversation (by its id in the history) to the
collections it uses, one of which may be the chat's own attachments.

Why WAL and ``synchronous=NORMAL``: the indexer commits one file at a time, so a crash loses
at most the file being indexed (it stays "pending" and is indexed again on the next start);
readers (a chat's retrieval) never wait for the indexer.

Threading: one connection shared by every thread, guarded by a lock held for one short
transaction at a time (``transaction``/``read``), never across an ``await``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from backend.errors import KnowledgeUnavailable
from backend.paths import hearth_paths

FILE_NAME = "knowledge.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'library',
    paused INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE folders (
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    PRIMARY KEY (collection_id, path)
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    note TEXT,
    kind TEXT,
    title TEXT,
    pages INTEGER NOT NULL DEFAULT 0,
    chars INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL,
    UNIQUE (collection_id, path)
);
CREATE INDEX files_by_state ON files(collection_id, state);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading TEXT,
    page INTEGER,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    vector BLOB,
    vector_model TEXT
);
CREATE INDEX chunks_by_file ON chunks(file_id, ordinal);
CREATE INDEX chunks_by_collection ON chunks(collection_id, vector_model);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, heading, content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
    VALUES ('delete', old.id, old.text, old.heading);
END;
CREATE TABLE chat_sources (
    conversation_id INTEGER NOT NULL,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    PRIMARY KEY (conversation_id, collection_id)
);
"""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                       timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise KnowledgeUnavailable(
                f"Hearth could not open its document index at {path} ({exc}). Check that the "
                "folder exists and is writable, then restart Hearth.") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise KnowledgeUnavailable(
                f"Hearth could not read its document index at {path} ({exc}). Move the file "
                "aside (it is rebuilt from your folders) and restart Hearth.") from exc

    @classmethod
    def open_default(cls) -> Database:
        return cls(default_path())

    def _setup(self) -> None:
        db = self._db
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise KnowledgeUnavailable(
                    f"The document index at {self.path} was written by a newer Hearth. "
                    "Update Hearth to use it; it was left untouched.")
            if version < 1:
                for statement in _statements(_SCHEMA):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self._db

    def close(self) -> None:
        with self.lock:
            self._db.close()


def _statements(script: str) -> Iterator[str]:
    """The script's statements, a trigger's body kept whole (it holds semicolons)."""
    buffer: list[str] = []
    for line in script.strip().splitlines():
        buffer.append(line)
        text = "\n".join(buffer).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER")
                                   or text.upper().endswith("END;")):
            yield text
            buffer = []


def default_path() -> Path:
    """Where the library lives: beside the history, under ``HEARTH_HOME`` when set."""
    return hearth_paths().data_dir / FILE_NAME


def now() -> float:
    return time.time()
