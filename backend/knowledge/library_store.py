"""Collections, their folders and files, and which chats use which collections.

Threading: every method is one short transaction or read on the shared ``Database``; safe
from any thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from backend.errors import CollectionNotFound, InvalidRequest
from backend.knowledge.database import Database, now
from backend.knowledge.records import CollectionInfo, FileInfo

CHAT_PREFIX = "chat-"  # a chat's own attachments: collection "chat-<conversation id>"


class LibraryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- collections -----------------------------------------------------------------------
    def create(self, name: str, kind: str = "library") -> CollectionInfo:
        name = " ".join(name.split())
        if not name:
            raise InvalidRequest("Give the collection a name.")
        if kind == "library" and name.startswith(CHAT_PREFIX) and name[5:].isdigit():
            raise InvalidRequest(f"'{name}' is reserved for a chat's attachments; pick "
                                 "another name.")
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                raise InvalidRequest(f"There is already a collection named '{name}'.")
            db.execute("INSERT INTO collections (name, kind, created_at) VALUES (?, ?, ?)",
                       (name, kind, now()))
        return self.get(name)

    def get(self, name_or_id: str | int) -> CollectionInfo:
        with self._db.read() as db:
            row = _collection_row(db, name_or_id)
            return _info(db, row)

    def find(self, name_or_id: str | int) -> CollectionInfo | None:
        try:
            return self.get(name_or_id)
        except CollectionNotFound:
            return None

    def list(self, kind: str | None = "library") -> list[CollectionInfo]:
        with self._db.read() as db:
            rows = db.execute("SELECT * FROM collections WHERE ? IS NULL OR kind = ? "
                              "ORDER BY name COLLATE NOCASE", (kind, kind)).fetchall()
            return [_info(db, row) for row in rows]

    def delete(self, name_or_id: str | int) -> None:
        with self._db.transaction() as db:
            row = _collection_row(db, name_or_id)
            db.execute("DELETE FROM collections WHERE id = ?", (row["id"],))

    def set_paused(self, collection_id: int, paused: bool) -> None:
        with self._db.transaction() as db:
            db.execute("UPDATE collections SET paused = ? WHERE id = ?",
                       (int(paused), collection_id))

    # -- folders ---------------------------------------------------------------------------
    def add_folder(self, collection_id: int, folder: Path) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO folders (collection_id, path) VALUES (?, ?)",
                       (collection_id, str(folder)))

    def remove_folder(self, collection_id: int, folder: Path) -> list[int]:
        """Drops the folder; returns the ids of its files no other folder holds (to forget)."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM folders WHERE collection_id = ? AND path = ?",
                       (collection_id, str(folder)))
            others = [Path(r["path"]) for r in db.execute(
                "SELECT path FROM folders WHERE collection_id = ?", (collection_id,))]
            rows = db.execute("SELECT id, path FROM files WHERE collection_id = ?",
                              (collection_id,)).fetchall()
        return [r["id"] for r in rows if _under(Path(r["path"]), folder)
                and not any(_under(Path(r["path"]), o) for o in others)]

    def folders(self, collection_id: int) -> list[Path]:
        with self._db.read() as db:
            return [Path(r["path"]) for r in db.execute(
                "SELECT path FROM folders WHERE collection_id = ? ORDER BY path",
                (collection_id,))]

    # -- files -----------------------------------------------------------------------------
    def known_files(self, collection_id: int) -> dict[str, tuple[int, int, int, str]]:
        """path → (file id, size, mtime_ns, state)."""
        with self._db.read() as db:
            return {r["path"]: (r["id"], r["size"], r["mtime_ns"], r["state"]) for r in
                    db.execute("SELECT id, path, size, mtime_ns, state FROM files "
                               "WHERE collection_id = ?", (collection_id,))}

    def mark_pending(self, collection_id: int, entries: Iterable[tuple[str, int, int]]) -> None:
        """(path, size, mtime_ns) of files new or changed on disk: to be (re)read."""
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO files (collection_id, path, size, mtime_ns, state) "
                "VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (collection_id, path) DO UPDATE "
                "SET size = excluded.size, mtime_ns = excluded.mtime_ns, state = 'pending'",
                [(collection_id, p, s, m) for p, s, m in entries])

    def pending(self, collection_id: int) -> list[FileInfo]:
        with self._db.read() as db:
            return [_file(r) for r in db.execute(
                "SELECT * FROM files WHERE collection_id = ? AND state = 'pending' "
                "ORDER BY path", (collection_id,))]

    def files(self, collection_id: int) -> list[FileInfo]:
        with self._db.read() as db:
            return [_file(r) for r in db.execute(
                "SELECT * FROM files WHERE collection_id = ? ORDER BY path", (collection_id,))]

    def files_at(self, path: str) -> list[FileInfo]:
        """``path``'s indexed rows in any collection, the most recently read first."""
        with self._db.read() as db:
            return [_file(r) for r in db.execute(
                "SELECT * FROM files WHERE path = ? AND state = 'indexed' "
                "ORDER BY indexed_at DESC", (path,))]

    def file(self, file_id: int) -> FileInfo | None:
        with self._db.read() as db:
            row = db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return _file(row) if row else None

    def mark_failed(self, file_id: int, error: str) -> None:
        """The file can't be read: its old passages go (they no longer match the file)."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            db.execute("UPDATE files SET state = 'failed', error = ?, note = NULL, "
                       "indexed_at = ? WHERE id = ?", (error, now(), file_id))

    def record_failed(self, collection_id: int, entries: Iterable[tuple[str, str]]) -> None:
        """(path, error) of entries the scan found but won't read (a link, a pipe, a name
        that isn't text): listed as failed with why, never read. A file read before (a
        document since replaced by a link) loses its passages: they no longer match it."""
        entries = list(entries)
        with self._db.transaction() as db:
            db.executemany("DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE "
                           "collection_id = ? AND path = ?)",
                           [(collection_id, p) for p, _ in entries])
            db.executemany(
                "INSERT INTO files (collection_id, path, state, error, indexed_at) "
                "VALUES (?, ?, 'failed', ?, ?) ON CONFLICT (collection_id, path) DO UPDATE "
                "SET state = 'failed', error = excluded.error, note = NULL",
                [(collection_id, p, e, now()) for p, e in entries])

    def forget(self, file_ids: Iterable[int]) -> None:
        with self._db.transaction() as db:
            db.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in file_ids])

    # -- chats -----------------------------------------------------------------------------
    def attach(self, conversation_id: int, collection_id: int) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO chat_sources (conversation_id, collection_id) "
                       "VALUES (?, ?)", (conversation_id, collection_id))

    def detach(self, conversation_id: int, collection_id: int) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM chat_sources WHERE conversation_id = ? AND "
                       "collection_id = ?", (conversation_id, collection_id))

    def attached(self, conversation_id: int) -> list[CollectionInfo]:
        with self._db.read() as db:
            rows = db.execute(
                "SELECT c.* FROM collections AS c JOIN chat_sources AS s ON s.collection_id "
                "= c.id WHERE s.conversation_id = ? ORDER BY c.kind, c.name",
                (conversation_id,)).fetchall()
            return [_info(db, row) for row in rows]


def _collection_row(db: sqlite3.Connection, name_or_id: str | int) -> sqlite3.Row:
    column = "id" if isinstance(name_or_id, int) else "name"
    row = db.execute(f"SELECT * FROM collections WHERE {column} = ?", (name_or_id,)).fetchone()
    if row is None:
        raise CollectionNotFound(f"There is no collection '{name_or_id}'. Create it first "
                                 "(`hearth docs add FOLDER --collection NAME`).")
    return row  # type: ignore[no-any-return]


def _info(db: sqlite3.Connection, row: sqlite3.Row) -> CollectionInfo:
    cid = row["id"]
    counts = {r["state"]: r["n"] for r in db.execute(
        "SELECT state, COUNT(*) AS n FROM files WHERE collection_id = ? GROUP BY state", (cid,))}
    chunks = db.execute("SELECT COUNT(*), COUNT(vector) FROM chunks WHERE collection_id = ?",
                        (cid,)).fetchone()
    folders = tuple(r["path"] for r in db.execute(
        "SELECT path FROM folders WHERE collection_id = ? ORDER BY path", (cid,)))
    return CollectionInfo(cid, row["name"], row["kind"], bool(row["paused"]), folders,
                          files=sum(counts.values()), indexed=counts.get("indexed", 0),
                          failed=counts.get("failed", 0), pending=counts.get("pending", 0),
                          chunks=chunks[0], embedded=chunks[1])


def _file(row: sqlite3.Row) -> FileInfo:
    return FileInfo(row["id"], row["collection_id"], row["path"], row["state"], row["error"],
                    row["note"], row["kind"], row["title"], row["pages"], row["chars"],
                    row["size"], row["mtime_ns"])


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
