"""``ChatStore``: conversations and their messages in one SQLite file.

Why SQLite in WAL mode: every write is a small transaction that survives the app being killed
(``synchronous=NORMAL`` only risks the last commits on power loss, never corruption), and
readers never wait for the writer.

Threading contract: one connection, guarded by a lock, shared by every thread
(``check_same_thread=False``). Each public call takes the lock for one short transaction, so
the GUI thread, the engine's consumers and the API server may all call in; none of them
holds the lock across an ``await``.

One process should own a history file at a time: opening it marks every reply still
"streaming" as "interrupted", which is right only when no other process is writing one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backend.errors import ConversationNotFound, HistoryUnavailable
from backend.paths import hearth_paths
from backend.store.export import to_json, to_markdown
from backend.store.images import FOLDER as IMAGES_FOLDER
from backend.store.images import ImageStore, require_media_type
from backend.store.records import (  # noqa: F401 - part of this module's face
    MESSAGE_STATES,
    Conversation,
    MessageState,
    StoredImage,
    StoredMessage,
)
from backend.store.schema import SCHEMA_VERSION, migrate

DEFAULT_TITLE = "New chat"
TITLE_MAX_CHARS = 60
FILE_NAME = "history.sqlite3"

log = logging.getLogger(__name__)


def auto_title(text: str) -> str:
    """The first non-blank line, whitespace collapsed, cut at ~60 characters with an ellipsis."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) > TITLE_MAX_CHARS:
        line = line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return line or DEFAULT_TITLE


def _images_title(count: int) -> str:
    """A chat that starts with images alone is named after them."""
    return "" if not count else "Image" if count == 1 else f"{count} images"


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards escaped (``\\`` is the ESCAPE character)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _fold(value: str | None) -> str | None:
    return value.casefold() if value is not None else None


class ChatStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.images = ImageStore(path.parent / IMAGES_FOLDER)
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; _transaction() says BEGIN.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                       timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryUnavailable(
                f"Hearth could not open its chat history at {path} ({exc}). Check that the "
                "folder exists and is writable, then restart Hearth.") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise HistoryUnavailable(
                f"Hearth could not read its chat history at {path} ({exc}). The file was left "
                "as it is; move it aside to start a fresh history.") from exc
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_default(cls) -> ChatStore:
        """The history file under the data folder (``HEARTH_HOME`` redirects it)."""
        return cls(hearth_paths().data_dir / FILE_NAME)

    def _setup(self) -> None:
        db = self._db
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        # Case-insensitive search beyond ASCII (SQLite's LIKE folds only A-Z).
        db.create_function("hearth_fold", 1, _fold, deterministic=True)
        with self._transaction():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryUnavailable(
                    f"The chat history at {self.path} was written by a newer Hearth. Update "
                    "Hearth to open it; it was left untouched.")
            migrate(db, version)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # The app died mid-reply last time: what was saved is all there will be.
            db.execute("UPDATE messages SET state = 'interrupted' WHERE state = 'streaming'")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (busy, disk full) leaves the transaction open: end it too,
                # or every later call fails to BEGIN. SQLite may have rolled back already.
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations ---------------------------------------------------------------------

    def create_conversation(self, model_id: str | None = None, *,
                            system_prompt: str | None = None) -> Conversation:
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, model_id, "
                "system_prompt) VALUES (?, ?, ?, ?, ?)",
                (DEFAULT_TITLE, now, now, model_id, system_prompt))
            return self._conversation(db, int(cur.lastrowid or 0))

    def list_conversations(self, search: str = "") -> list[Conversation]:
        """Newest activity first; ``search`` matches the title or any message, any case."""
        needle = search.strip()
        with self._lock:
            if not needle:
                rows = self._db.execute(
                    "SELECT * FROM conversations ORDER BY updated_at DESC, id DESC").fetchall()
            elif needle.isascii():  # LIKE runs in C and folds ASCII case itself
                pattern = _like_pattern(needle)
                rows = self._db.execute(
                    "SELECT * FROM conversations AS c WHERE c.title LIKE :p ESCAPE '\\' "
                    "OR EXISTS (SELECT 1 FROM messages AS m WHERE m.conversation_id = c.id "
                    "AND m.content LIKE :p ESCAPE '\\') "
                    "ORDER BY c.updated_at DESC, c.id DESC", {"p": pattern}).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM conversations AS c WHERE instr(hearth_fold(c.title), :n) "
                    "OR EXISTS (SELECT 1 FROM messages AS m WHERE m.conversation_id = c.id "
                    "AND instr(hearth_fold(m.content), :n)) "
                    "ORDER BY c.updated_at DESC, c.id DESC",
                    {"n": needle.casefold()}).fetchall()
        return [_to_conversation(row) for row in rows]

    def conversation(self, conv_id: int) -> Conversation:
        with self._lock:
            return self._conversation(self._db, conv_id)

    def rename_conversation(self, conv_id: int, title: str) -> None:
        """A custom title: later messages no longer retitle the conversation."""
        title = " ".join(title.split()) or DEFAULT_TITLE
        with self._transaction() as db:
            self._require(db, conv_id)
            db.execute("UPDATE conversations SET title = ?, title_is_custom = 1 WHERE id = ?",
                       (title, conv_id))

    def delete_conversation(self, conv_id: int) -> None:
        """Deletes it with its messages and the image files no other chat uses; an unknown id
        is not an error (already gone)."""
        self._delete_messages("conversation_id = :id", {"id": conv_id},
                              "DELETE FROM conversations WHERE id = :id")

    def set_model(self, conv_id: int, model_id: str | None) -> None:
        with self._transaction() as db:
            self._require(db, conv_id)
            db.execute("UPDATE conversations SET model_id = ? WHERE id = ?", (model_id, conv_id))

    def set_system_prompt(self, conv_id: int, system_prompt: str) -> None:
        """This chat's instructions from now on (other chats keep theirs)."""
        with self._transaction() as db:
            self._require(db, conv_id)
            db.execute("UPDATE conversations SET system_prompt = ? WHERE id = ?",
                       (system_prompt, conv_id))

    # -- messages --------------------------------------------------------------------------

    def messages(self, conv_id: int) -> list[StoredMessage]:
        with self._lock:
            self._require(self._db, conv_id)
            rows = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                (conv_id,)).fetchall()
            image_rows = self._db.execute(
                "SELECT i.* FROM message_images AS i JOIN messages AS m ON m.id = i.message_id "
                "WHERE m.conversation_id = ? ORDER BY i.message_id, i.position",
                (conv_id,)).fetchall()
        images: dict[int, list[StoredImage]] = {}
        for image in image_rows:
            try:
                stored = self.images.record(image["digest"], image["media_type"])
            except ValueError:  # a row edited by hand to name something else: not ours
                continue
            images.setdefault(image["message_id"], []).append(stored)
        return [_to_message(row, images.get(row["id"], ())) for row in rows]

    def add_message(self, conv_id: int, role: str, content: str, *,
                    state: str = "complete", stats: dict[str, Any] | None = None,
                    images: Sequence[bytes] = ()) -> StoredMessage:
        """``images``: the bytes of images attached to the message (PNG, JPEG, WebP, GIF),
        kept as files in the data folder; raises ``ImageRejected`` (nothing stored) for
        bytes that are none of those. When storing fails, no file is left that no message
        references."""
        _check_state(state)
        for data in images:  # every one checked before any is written
            require_media_type(data)
        now = time.time()
        kept: list[StoredImage] = []
        with self._lock, self._dropping_unreferenced_on_error(kept), \
                self._transaction() as db:
            conv = self._conversation(db, conv_id)
            if role == "user" and not conv.title_is_custom and not db.execute(
                    "SELECT 1 FROM messages WHERE conversation_id = ? AND role = 'user' "
                    "LIMIT 1", (conv_id,)).fetchone():
                db.execute("UPDATE conversations SET title = ? WHERE id = ?",
                           (auto_title(content or _images_title(len(images))), conv_id))
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, state, "
                "stats) VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, role, content, now, state, _dump_stats(stats)))
            # Written inside the transaction (under the lock): a concurrent delete can't
            # remove a file this message is about to reference, and a refused image stores
            # no message at all. Should the rest fail, the files go again (see below).
            kept.extend(self.images.put(data) for data in images)
            db.executemany(
                "INSERT INTO message_images (message_id, position, digest, media_type) "
                "VALUES (?, ?, ?, ?)",
                [(cur.lastrowid, i, im.digest, im.media_type) for i, im in enumerate(kept)])
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conv_id))
            row = db.execute("SELECT * FROM messages WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _to_message(row, kept)

    @contextmanager
    def _dropping_unreferenced_on_error(self, written: Sequence[StoredImage]) -> Iterator[None]:
        """When the block fails (its transaction rolled back), remove those of the image
        files ``written`` that no message references, so a failed insert leaves no orphan;
        the same picture in another chat stays. Checked in a transaction of its own, so no writer
        can reference one meanwhile; if even that fails the files stay: a stray file costs
        disk space, a wrongly removed one would cost a person's picture."""
        try:
            yield
        except BaseException:
            if written:
                try:
                    with self._transaction() as db:
                        for image in dict.fromkeys(written):
                            if not db.execute("SELECT 1 FROM message_images WHERE digest = ? "
                                              "LIMIT 1", (image.digest,)).fetchone():
                                self.images.discard(image)
                except sqlite3.Error as exc:
                    log.warning("image files of a failed message were kept: %s", exc)
            raise

    def update_message(self, msg_id: int, *, content: str | None = None,
                       state: str | None = None, stats: dict[str, Any] | None = None) -> None:
        """Change what is given. A message deleted meanwhile is left alone: a reply still
        streaming into a chat the person deleted has nowhere to go, and that is fine."""
        if state is not None:
            _check_state(state)
        sets: list[str] = []
        values: list[Any] = []
        if content is not None:
            sets.append("content = ?")
            values.append(content)
        if state is not None:
            sets.append("state = ?")
            values.append(state)
        if stats is not None:
            sets.append("stats = ?")
            values.append(_dump_stats(stats))
        if not sets:
            return
        with self._transaction() as db:
            cur = db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?",
                             (*values, msg_id))
            if cur.rowcount:
                db.execute(
                    "UPDATE conversations SET updated_at = ? WHERE id = "
                    "(SELECT conversation_id FROM messages WHERE id = ?)", (time.time(), msg_id))

    def delete_message(self, msg_id: int) -> None:
        self._delete_messages("id = :id", {"id": msg_id})

    def delete_messages_from(self, msg_id: int) -> None:
        """Delete this message and every later one in its conversation (regenerate, edit)."""
        self._delete_messages("id >= :id AND conversation_id = "
                              "(SELECT conversation_id FROM messages WHERE id = :id)",
                              {"id": msg_id})

    def _delete_messages(self, where: str, params: dict[str, Any],
                         statement: str | None = None) -> None:
        """Delete the messages ``where`` selects (or run ``statement``, which cascades to
        them), then the image files that no message references any more. Another chat's
        image stays: files are shared by content."""
        with self._lock:
            with self._transaction() as db:
                used = db.execute(
                    "SELECT DISTINCT digest, media_type FROM message_images WHERE message_id IN "
                    f"(SELECT id FROM messages WHERE {where})", params).fetchall()
                db.execute(statement or f"DELETE FROM messages WHERE {where}", params)
                orphans = [(r["digest"], r["media_type"]) for r in used if not db.execute(
                    "SELECT 1 FROM message_images WHERE digest = ? LIMIT 1",
                    (r["digest"],)).fetchone()]
            for digest, media_type in orphans:  # committed: now the files may go
                with suppress(ValueError):
                    self.images.discard(self.images.record(digest, media_type))

    # -- export ----------------------------------------------------------------------------

    def export_markdown(self, conv_id: int, *, images_to: Path | None = None) -> str:
        """The chat as Markdown. ``images_to``: a folder beside the Markdown file to copy the
        chat's images into; they are linked by relative path (``<folder name>/<file>``), so
        the file and the folder travel together. None: the links name the files in the data
        folder (absolute ``file:`` URLs), which stay valid on this machine only."""
        conv, messages = self._snapshot(conv_id)
        if images_to is None:
            return to_markdown(conv, messages)
        self.images.copy_out([im for m in messages for im in m.images], images_to)
        folder = quote(images_to.name)  # a space would end a Markdown link
        return to_markdown(conv, messages, image_link=lambda im: f"{folder}/{im.path.name}")

    def export_json(self, conv_id: int) -> dict[str, Any]:
        conv, messages = self._snapshot(conv_id)
        return to_json(conv, messages)

    def _snapshot(self, conv_id: int) -> tuple[Conversation, list[StoredMessage]]:
        with self._lock:  # one lock: the title and the messages agree with each other
            return self.conversation(conv_id), self.messages(conv_id)

    # -- helpers (the caller holds the lock) -----------------------------------------------

    def _conversation(self, db: sqlite3.Connection, conv_id: int) -> Conversation:
        row = db.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        if row is None:
            raise ConversationNotFound(
                "That chat no longer exists; it may have been deleted. Pick another chat "
                "from the list.")
        return _to_conversation(row)

    def _require(self, db: sqlite3.Connection, conv_id: int) -> None:
        self._conversation(db, conv_id)


def _check_state(state: str) -> None:
    if state not in MESSAGE_STATES:  # a programming error, not the person's
        raise ValueError(f"unknown message state {state!r}; expected one of "
                         f"{sorted(MESSAGE_STATES)}")


def _dump_stats(stats: dict[str, Any] | None) -> str | None:
    return None if stats is None else json.dumps(stats)


def _to_conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(id=row["id"], title=row["title"], created_at=row["created_at"],
                        updated_at=row["updated_at"], model_id=row["model_id"],
                        title_is_custom=bool(row["title_is_custom"]),
                        system_prompt=row["system_prompt"])


def _to_message(row: sqlite3.Row, images: Sequence[StoredImage] = ()) -> StoredMessage:
    stats = json.loads(row["stats"]) if row["stats"] is not None else None
    return StoredMessage(id=row["id"], conversation_id=row["conversation_id"], role=row["role"],
                         content=row["content"], created_at=row["created_at"],
                         state=row["state"], stats=stats, images=tuple(images))
