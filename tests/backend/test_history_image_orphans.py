"""A message whose insert fails leaves no image file behind, and never takes a file another
message still shows. Failures are forced with SQLite triggers, so the real rollback runs."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import ImageRejected
from backend.store import ChatStore
from tests.backend.image_crafting import png

RED, BLUE, GREEN = png(rgb=(220, 30, 30)), png(4, 6, rgb=(20, 30, 220)), png(rgb=(0, 200, 0))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    store = ChatStore(tmp_path / "data" / "history.sqlite3")
    yield store
    store.close()


def _files(store: ChatStore) -> set[str]:
    return {p.name for p in store.images.root.rglob("*") if p.is_file()}


def _name(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()}.png"


def _fail(store: ChatStore, table: str, event: str = "INSERT") -> None:
    store._db.execute(f"CREATE TEMP TRIGGER fail_{table} BEFORE {event} ON main.{table} "
                      "BEGIN SELECT RAISE(ABORT, 'forced failure'); END")


def _heal(store: ChatStore, table: str) -> None:
    store._db.execute(f"DROP TRIGGER temp.fail_{table}")


@pytest.mark.parametrize(("table", "event"), [
    ("message_images", "INSERT"),  # the image rows themselves
    ("conversations", "UPDATE"),  # after every image row went in: all of it rolls back
])
def test_a_failed_insert_leaves_no_orphan_file(store: ChatStore, table: str,
                                               event: str) -> None:
    conv = store.create_conversation("m")
    _fail(store, table, event)
    with pytest.raises(sqlite3.IntegrityError, match="forced failure"):
        store.add_message(conv.id, "user", "What is this?", images=[RED, BLUE, RED])
    assert _files(store) == set()
    assert store.messages(conv.id) == []
    # The store still works afterwards, and keeps what it is then given.
    _heal(store, table)
    sent = store.add_message(conv.id, "user", "And now?", images=[RED])
    assert _files(store) == {_name(RED)} and sent.images[0].path.read_bytes() == RED


def test_a_file_another_message_shows_is_kept(store: ChatStore) -> None:
    first = store.create_conversation("m")
    store.add_message(first.id, "user", "Red", images=[RED])
    second = store.create_conversation("m")
    _fail(store, "message_images")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_message(second.id, "user", "Red and blue", images=[RED, BLUE])
    assert _files(store) == {_name(RED)}  # blue was new and is gone; red is the first chat's
    (kept,) = store.messages(first.id)
    assert kept.images[0].path.read_bytes() == RED


def test_a_failed_commit_is_rolled_back_and_cleaned_up(store: ChatStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """COMMIT itself failing (disk full, busy) must not leave the transaction open, nor the
    files of the message it was to store."""
    conv = store.create_conversation("m")
    real = store._db

    class FailingCommit:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "COMMIT" and not done:
                done.append(True)
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

    done: list[bool] = []
    monkeypatch.setattr(store, "_db", FailingCommit())
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        store.add_message(conv.id, "user", "Green", images=[GREEN])
    assert _files(store) == set() and store.messages(conv.id) == []
    store.add_message(conv.id, "user", "Green again", images=[GREEN])  # BEGIN works again
    assert _files(store) == {_name(GREEN)}


def test_when_the_check_itself_fails_the_files_stay(store: ChatStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Unable to tell whether a file is referenced, the store keeps it: a stray file costs
    disk space, a wrongly removed one a person's picture."""
    conv = store.create_conversation("m")
    _fail(store, "message_images")
    real = store._db
    calls: list[str] = []

    class BrokenAfterFailure:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            calls.append(sql)
            if sql.startswith("SELECT 1 FROM message_images"):
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

        def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
            return real.executemany(sql, rows)

    monkeypatch.setattr(store, "_db", BrokenAfterFailure())
    with pytest.raises(sqlite3.IntegrityError, match="forced failure"):
        store.add_message(conv.id, "user", "Red", images=[RED])
    assert _files(store) == {_name(RED)}
    assert calls[-1] == "ROLLBACK"  # the cleanup's own transaction was ended too


def test_a_bad_image_among_good_ones_writes_nothing(store: ChatStore) -> None:
    conv = store.create_conversation("m")
    with pytest.raises(ImageRejected, match="PNG, JPEG, WebP or GIF"):
        store.add_message(conv.id, "user", "Look", images=[RED, b"%PDF-1.7 not a picture"])
    assert _files(store) == set() and store.messages(conv.id) == []
