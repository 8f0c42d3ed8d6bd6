"""The chat history store on a real SQLite file in the test's HEARTH_HOME."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import BackendError, ConversationNotFound, HistoryUnavailable
from backend.paths import hearth_paths
from backend.store import DEFAULT_TITLE, ChatStore, ReplyRecorder, auto_title
from backend.store.history import SCHEMA_VERSION


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    store = ChatStore(tmp_path / "history.sqlite3")
    yield store
    store.close()


def test_open_default_lives_under_hearth_home_in_wal_mode(hearth_home: Path) -> None:
    store = ChatStore.open_default()
    try:
        assert store.path == hearth_paths().data_dir / "history.sqlite3"
        assert store.path.is_relative_to(hearth_home)
        db = sqlite3.connect(store.path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.close()
    finally:
        store.close()


def test_conversation_lifecycle(store: ChatStore) -> None:
    conv = store.create_conversation("smollm2:135m")
    assert conv.title == DEFAULT_TITLE and not conv.title_is_custom
    assert conv.model_id == "smollm2:135m" and conv.created_at == conv.updated_at
    assert store.conversation(conv.id) == conv
    assert store.messages(conv.id) == []

    store.set_model(conv.id, "gemma3:270m")
    assert store.conversation(conv.id).model_id == "gemma3:270m"

    store.rename_conversation(conv.id, "  My   plans ")
    renamed = store.conversation(conv.id)
    assert renamed.title == "My plans" and renamed.title_is_custom

    store.delete_conversation(conv.id)
    with pytest.raises(ConversationNotFound) as caught:
        store.conversation(conv.id)
    assert isinstance(caught.value, BackendError) and caught.value.user_message
    with pytest.raises(ConversationNotFound):
        store.add_message(conv.id, "user", "hello?")
    with pytest.raises(ConversationNotFound):
        store.messages(conv.id)
    store.delete_conversation(conv.id)  # already gone: nothing to do


def test_messages_keep_order_state_and_stats(store: ChatStore) -> None:
    conv = store.create_conversation()
    user = store.add_message(conv.id, "user", "Hi")
    reply = store.add_message(conv.id, "assistant", "", state="streaming")
    assert (user.role, user.content, user.state, user.stats) == ("user", "Hi", "complete", None)
    assert reply.state == "streaming" and reply.conversation_id == conv.id

    stats = {"completion_tokens": 3, "decode_tokens_per_s": 41.5}
    store.update_message(reply.id, content="Hello there")
    store.update_message(reply.id, state="complete", stats=stats)
    got = store.messages(conv.id)
    assert [m.id for m in got] == [user.id, reply.id]
    assert got[1].content == "Hello there" and got[1].state == "complete"
    assert got[1].stats == stats
    store.update_message(reply.id, content="Hello!")  # state and stats stay as they were
    assert store.messages(conv.id)[1].stats == stats

    with pytest.raises(ValueError):
        store.add_message(conv.id, "assistant", "x", state="bogus")
    with pytest.raises(ValueError):
        store.update_message(reply.id, state="bogus")
    store.update_message(999_999, content="nowhere")  # deleted meanwhile: ignored

    store.delete_message(user.id)
    assert [m.id for m in store.messages(conv.id)] == [reply.id]


def test_delete_messages_from_cuts_the_tail_of_one_conversation(store: ChatStore) -> None:
    conv, other = store.create_conversation(), store.create_conversation()
    ids = [store.add_message(conv.id, role, f"m{i}").id
           for i, role in enumerate(["user", "assistant", "user", "assistant"])]
    kept = store.add_message(other.id, "user", "elsewhere")  # a later id, other chat
    store.delete_messages_from(ids[2])
    assert [m.id for m in store.messages(conv.id)] == ids[:2]
    assert store.messages(other.id) == [kept]
    # Ids are never reused, so a stale id can never hit a newer message.
    again = store.add_message(conv.id, "user", "edited")
    assert again.id > kept.id


def test_first_user_message_titles_the_chat_unless_renamed(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "system", "You are terse.")
    assert store.conversation(conv.id).title == DEFAULT_TITLE
    store.add_message(conv.id, "user", "\n  How do   I bake bread?\nI have flour.")
    assert store.conversation(conv.id).title == "How do I bake bread?"
    store.add_message(conv.id, "user", "Something else")  # only the first one titles
    assert store.conversation(conv.id).title == "How do I bake bread?"

    long = store.create_conversation()
    store.add_message(long.id, "user", "word " * 40)
    title = store.conversation(long.id).title
    assert len(title) <= 60 and title.endswith("…")

    custom = store.create_conversation()
    store.rename_conversation(custom.id, "Mine")
    store.add_message(custom.id, "user", "Would retitle")
    assert store.conversation(custom.id).title == "Mine"


def test_auto_title_edge_cases() -> None:
    assert auto_title("") == DEFAULT_TITLE
    assert auto_title("   \n\t") == DEFAULT_TITLE
    assert auto_title("x" * 60) == "x" * 60
    assert auto_title("x" * 61) == "x" * 59 + "…"


def test_list_is_newest_activity_first(store: ChatStore) -> None:
    first, second = store.create_conversation(), store.create_conversation()
    assert [c.id for c in store.list_conversations()] == [second.id, first.id]
    time.sleep(0.01)
    store.add_message(first.id, "user", "bump")
    listed = store.list_conversations()
    assert [c.id for c in listed] == [first.id, second.id]
    assert listed[0].updated_at > listed[0].created_at


def test_search_matches_titles_and_messages_in_any_case(store: ChatStore) -> None:
    bread = store.create_conversation()
    store.add_message(bread.id, "user", "How do I bake bread?")
    store.add_message(bread.id, "assistant", "Knead the DOUGH for 10 minutes.")
    renamed = store.create_conversation()
    store.rename_conversation(renamed.id, "Trip to Zürich")
    percent = store.create_conversation()
    store.add_message(percent.id, "user", "What is 50% of 8? Use snake_case.")
    store.create_conversation()  # empty, matches nothing but ""

    def found(text: str) -> set[int]:
        return {c.id for c in store.list_conversations(text)}

    assert found("dough") == {bread.id}  # message content, other case
    assert found("BAKE") == {bread.id}  # title (and message)
    assert found("zürich") == {renamed.id} == found("ZÜRICH")  # beyond ASCII
    assert found("50%") == {percent.id}  # LIKE wildcards are literal
    assert found("%") == {percent.id}
    assert found("e_c") == {percent.id}
    assert found("a_e") == set()  # "_" would match "ake" in "bake" if it were a wildcard
    assert found("nothing like it") == set()
    assert len(store.list_conversations("  ")) == 4


def test_exports(store: ChatStore) -> None:
    conv = store.create_conversation("smollm2:135m")
    store.add_message(conv.id, "user", "Say hi")
    reply = store.add_message(conv.id, "assistant", "Hi", state="streaming")
    store.update_message(reply.id, content="Hi!", state="stopped", stats={"tokens": 2})

    markdown = store.export_markdown(conv.id)
    assert markdown.startswith("# Say hi\n")
    assert "smollm2:135m" in markdown and "Say hi" in markdown and "Hi!" in markdown
    assert markdown.index("Say hi\n\n## Assistant") < markdown.index("Hi!")
    assert "stopped" in markdown

    data = json.loads(json.dumps(store.export_json(conv.id)))  # round-trips as JSON
    assert data["title"] == "Say hi" and data["model"] == "smollm2:135m"
    assert data["created_at"] == conv.created_at and data["updated_at"] >= conv.created_at
    assert [(m["role"], m["content"], m["state"], m["stats"]) for m in data["messages"]] == [
        ("user", "Say hi", "complete", None), ("assistant", "Hi!", "stopped", {"tokens": 2})]
    with pytest.raises(ConversationNotFound):
        store.export_json(conv.id + 100)


def test_reopen_marks_streaming_replies_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = ChatStore(path)
    conv = store.create_conversation()
    user = store.add_message(conv.id, "user", "Tell me a story")
    reply = store.add_message(conv.id, "assistant", "Once upon", state="streaming")
    done = store.add_message(conv.id, "assistant", "fin", state="stopped")
    store.close()

    reopened = ChatStore(path)
    try:
        states = {m.id: (m.state, m.content) for m in reopened.messages(conv.id)}
        assert states == {user.id: ("complete", "Tell me a story"),
                          reply.id: ("interrupted", "Once upon"),
                          done.id: ("stopped", "fin")}
    finally:
        reopened.close()


def test_a_newer_or_damaged_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(HistoryUnavailable, match="newer Hearth"):
        ChatStore(newer)

    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"not a database at all" * 100)
    with pytest.raises(HistoryUnavailable):
        ChatStore(damaged)
    assert damaged.read_bytes() == b"not a database at all" * 100


def test_reply_recorder_writes_at_most_every_interval(store: ChatStore) -> None:
    conv = store.create_conversation()
    reply = store.add_message(conv.id, "assistant", "", state="streaming")

    def saved() -> tuple[str, str]:
        message = store.messages(conv.id)[0]
        return message.content, message.state

    recorder = ReplyRecorder(store, reply.id, flush_interval_s=60)
    recorder.append("Hel")
    recorder.append("lo")
    assert recorder.content == "Hello"
    assert saved() == ("", "streaming")  # buffered: the interval has not passed
    recorder.flush()
    assert saved() == ("Hello", "streaming")
    recorder.append(" world")
    recorder.finish("complete", {"completion_tokens": 2})
    assert saved() == ("Hello world", "complete")
    assert store.messages(conv.id)[0].stats == {"completion_tokens": 2}
    with pytest.raises(RuntimeError):
        recorder.append("more")

    eager = ReplyRecorder(store, reply.id, flush_interval_s=0)
    eager.append("A")
    assert saved()[0] == "A"  # interval 0: every delta is written
    eager.finish("error")
    assert saved() == ("A", "error")


def test_threads_share_one_store(store: ChatStore) -> None:
    conversations = [store.create_conversation() for _ in range(4)]
    errors: list[BaseException] = []

    def writer(conv_id: int) -> None:
        try:
            for i in range(40):
                message = store.add_message(conv_id, "user", f"message {i}")
                store.update_message(message.id, content=f"message {i}!")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(40):
                store.list_conversations("message")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c.id,)) for c in conversations]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for conv in conversations:
        contents = [m.content for m in store.messages(conv.id)]
        assert contents == [f"message {i}!" for i in range(40)]


def test_hearth_opens_the_default_store_once_and_closes_it() -> None:
    from backend.api import Hearth

    hearth = Hearth()
    try:
        store = hearth.history
        assert store is hearth.history
        assert store.path == hearth_paths().data_dir / "history.sqlite3"
        store.create_conversation()
    finally:
        hearth.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the application
        store.list_conversations()
