"""Images in the chat history: stored once by content under the data folder, referenced from
the messages, restored on reopen, sent again as ``ImageInput``, removed only when no chat uses
them, and kept by both exports."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest

from backend.application.conversation import IMAGE_LEFT_OUT, prompt_messages
from backend.errors import ImageRejected
from backend.store import ChatStore
from backend.store.images import ImageStore, sniff_media_type
from backend.store.schema import SCHEMA_VERSION
from tests.backend.image_crafting import GIF_HEAD, JPEG_HEAD, WEBP_HEAD, png

RED, BLUE = png(rgb=(220, 30, 30)), png(4, 6, rgb=(20, 30, 220))


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    store = ChatStore(tmp_path / "data" / "history.sqlite3")
    yield store
    store.close()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_kinds_are_read_from_the_bytes() -> None:
    assert sniff_media_type(RED) == "image/png"
    assert sniff_media_type(JPEG_HEAD) == "image/jpeg"
    assert sniff_media_type(GIF_HEAD) == "image/gif"
    assert sniff_media_type(WEBP_HEAD) == "image/webp"
    for other in (b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7", b"RIFF1234WAVE"):
        assert sniff_media_type(other) is None


def test_images_are_stored_by_content_and_come_back_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "data" / "history.sqlite3"
    store = ChatStore(path)
    conv = store.create_conversation("m")
    sent = store.add_message(conv.id, "user", "What is this?", images=[RED, BLUE, RED])
    digest = hashlib.sha256(RED).hexdigest()
    assert [im.digest for im in sent.images] == [digest, hashlib.sha256(BLUE).hexdigest(),
                                                 digest]
    assert sent.images[0].path == tmp_path / "data" / "images" / digest[:2] / f"{digest}.png"
    assert sent.images[0].path.read_bytes() == RED
    assert len(_files(tmp_path / "data" / "images")) == 2  # the same bytes: one file
    store.close()

    reopened = ChatStore(path)
    (message,) = reopened.messages(conv.id)
    assert message.images == sent.images
    reopened.close()


def test_a_file_that_is_not_an_image_stores_nothing(store: ChatStore) -> None:
    conv = store.create_conversation()
    with pytest.raises(ImageRejected, match="PNG, JPEG, WebP or GIF"):
        store.add_message(conv.id, "user", "look", images=[RED, b"<svg/>"])
    assert store.messages(conv.id) == []
    assert not (store.path.parent / "images").exists() or \
        not any(p.suffix == ".svg" for p in _files(store.path.parent / "images"))


def test_deleting_a_chat_keeps_images_another_chat_uses(store: ChatStore) -> None:
    one, two = store.create_conversation(), store.create_conversation()
    shared = store.add_message(one.id, "user", "a", images=[RED, BLUE]).images
    store.add_message(two.id, "user", "b", images=[RED])
    store.delete_conversation(one.id)
    assert shared[0].path.is_file()  # the second chat still shows it
    assert not shared[1].path.exists()  # no one else used it
    store.delete_conversation(two.id)
    assert not shared[0].path.exists()


def test_deleting_messages_from_an_edit_removes_their_unused_images(store: ChatStore) -> None:
    conv = store.create_conversation()
    first = store.add_message(conv.id, "user", "first", images=[RED])
    store.add_message(conv.id, "assistant", "ok")
    later = store.add_message(conv.id, "user", "again", images=[RED, BLUE])
    store.delete_messages_from(later.id)
    assert first.images[0].path.is_file()  # the first turn still has it
    assert not later.images[1].path.exists()
    store.delete_message(first.id)
    assert not first.images[0].path.exists()


def test_no_name_leaves_the_images_folder(store: ChatStore, tmp_path: Path) -> None:
    images = ImageStore(tmp_path / "images")
    for digest, kind in (("../../etc/passwd", "image/png"), ("a" * 64, "text/html"),
                         ("A" * 64, "image/png"), ("a" * 63 + "/", "image/png")):
        with pytest.raises(ValueError):
            images.path_for(digest, kind)
    # A row edited by hand to point elsewhere is not followed.
    conv = store.create_conversation()
    message = store.add_message(conv.id, "user", "hi", images=[RED])
    db = sqlite3.connect(store.path)
    db.execute("INSERT INTO message_images VALUES (?, 1, '../../../secret', 'image/png')",
               (message.id,))
    db.commit()
    db.close()
    (again,) = store.messages(conv.id)
    assert [im.digest for im in again.images] == [message.images[0].digest]
    store.delete_conversation(conv.id)  # and deleting it removes nothing outside


def test_a_v2_history_gains_images(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    ChatStore(path).close()
    db = sqlite3.connect(path)  # back to what a v2 Hearth wrote
    db.execute("DROP TABLE message_images")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = ChatStore(path)
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "hi", images=[BLUE])
    assert store.messages(conv.id)[0].images[0].media_type == "image/png"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


def test_later_turns_send_the_images_again(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "", images=[RED])  # an image alone is a turn
    assert store.conversation(conv.id).title == "Image"  # and names the chat
    store.add_message(conv.id, "assistant", "", state="error")  # failed before any text
    store.add_message(conv.id, "user", "and this?", images=[BLUE])
    store.add_message(conv.id, "assistant", "A red square and a blue one.")
    store.add_message(conv.id, "user", "Which is bigger?")
    messages = prompt_messages(store.messages(conv.id))
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    first = messages[0]
    assert first.content == "and this?"  # the two user turns sent as one
    assert [im.data for im in first.images] == [RED, BLUE]
    assert first.images[0].digest == hashlib.sha256(RED).hexdigest()
    assert first.images[0].media_type == "image/png"
    assert messages[2].images == ()

    store.messages(conv.id)[0].images[0].path.unlink()  # removed by hand: left out
    assert [im.data for im in prompt_messages(store.messages(conv.id))[0].images] == [BLUE]


def test_exports_keep_the_images(store: ChatStore, tmp_path: Path) -> None:
    conv = store.create_conversation("m")
    message = store.add_message(conv.id, "user", "Describe it.", images=[RED, BLUE])
    store.add_message(conv.id, "assistant", "Red.")

    beside = tmp_path / "export" / "Describe it_images"
    markdown = store.export_markdown(conv.id, images_to=beside)
    name = message.images[0].path.name
    assert f"![Image 1](Describe%20it_images/{name})" in markdown
    assert markdown.index("![Image 2]") < markdown.rindex("Describe it.")
    assert (beside / name).read_bytes() == RED
    assert (beside / message.images[1].path.name).read_bytes() == BLUE
    assert message.images[0].path.as_uri() in store.export_markdown(conv.id)

    exported = store.export_json(conv.id)["messages"]
    images = exported[0]["images"]
    assert [im["media_type"] for im in images] == ["image/png", "image/png"]
    assert base64.b64decode(images[0]["data"]) == RED
    assert images[1]["sha256"] == hashlib.sha256(BLUE).hexdigest()
    assert "images" not in exported[1]


def test_a_grounded_question_keeps_its_images() -> None:
    """Documents in the chat put sources into the last user turn: its images stay with it."""
    from backend.application.grounding import Source, grounded
    from backend.engine.types import ChatMessage, ImageInput
    from backend.knowledge.records import Citation

    image = ImageInput(RED, "image/png")
    citation = Citation(0, "/docs/kettle.md", "kettle.md", None, None, 0, 10, "Descale")
    result = grounded([ChatMessage("user", "Is this kettle clean?", images=(image,))],
                      [Source(citation, "Descale monthly.")], "whole")
    assert result.messages[-1].images == (image,)
    assert "Question: Is this kettle clean?" in result.messages[-1].content


def test_a_long_chat_sends_only_its_latest_images(store: ChatStore) -> None:
    """More images than one request may carry: the oldest become a note, the chat goes on."""
    conv = store.create_conversation()
    for turn in range(3):
        store.add_message(conv.id, "user", f"turn {turn}", images=[RED, BLUE])
        store.add_message(conv.id, "assistant", "ok")
    messages = prompt_messages(store.messages(conv.id), max_images=3)
    assert [len(m.images) for m in messages if m.role == "user"] == [0, 1, 2]
    assert messages[0].content == f"{IMAGE_LEFT_OUT}\n{IMAGE_LEFT_OUT}\nturn 0"
    assert messages[2].content == f"{IMAGE_LEFT_OUT}\nturn 1"
    assert [im.data for im in messages[2].images] == [BLUE]  # the later one of the turn
    assert sum(len(m.images) for m in prompt_messages(store.messages(conv.id))) == 6
