"""Images in the window: attached by the button (a file dialog), by paste and by drag and drop,
shown as thumbnails (removable in the composer, above the sent message), enlarged by a click;
a file that isn't an image said above the box; a text-only model said before Send, naming the
vision models; the images stored in the data folder with the chat, shown again on reopen, sent
again on the next turn, and kept by both exports.

The reply is captured where the dispatcher hands the request to the engine (the real request,
built by the real request builder from the stored turns), so these flows run without a vision
model; ``test_vision_reply_end_to_end`` runs the real engine when the synthetic projector is
available.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QToolButton
from pytestqt.qtbot import QtBot

from app.main import STARTER_MODEL
from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from app.views.image_widgets import (
    MAX_ATTACHED,
    ImageViewer,
    MessageImages,
)
from backend.api import Finished, Hearth, LoadedModel, LocalModel, TextDelta, Usage
from backend.application import dispatch
from backend.application.generation import Generation
from backend.engine.types import GenerationEvent, GenerationRequest
from tests.app.windows import open_window, send
from tests.backend.image_crafting import png

TIMEOUT_MS = 60_000
RED, BLUE = png(40, 30, (220, 30, 30)), png(16, 16, (30, 40, 220))


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    return open_window(qtbot, hearth, model=STARTER_MODEL, max_tokens=8, seed=7)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    found = {"red": tmp_path / "red.png", "blue": tmp_path / "blue.png",
             "fake": tmp_path / "fake.png", "notes": tmp_path / "notes.txt",
             "broken": tmp_path / "broken.png"}
    found["red"].write_bytes(RED)
    found["blue"].write_bytes(BLUE)
    found["fake"].write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    found["notes"].write_text("Just words.")
    found["broken"].write_bytes(RED[:20])  # the signature and half a header
    return found


def vision_starter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The starter model as if paired with a projector (the picker marks it, Send allows
    images); the reply itself is captured before the engine (``captured``)."""
    real = Hearth.models

    def models(self: Hearth) -> list[LocalModel]:
        return [dataclasses.replace(m, mmproj=tmp_path / "mmproj.gguf")
                if m.id == STARTER_MODEL else m for m in real(self)]

    monkeypatch.setattr(Hearth, "models", models)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[GenerationRequest]:
    """Requests as the dispatcher hands them to the engine; a canned reply comes back, and no
    model is loaded (a load would only cost time)."""
    seen: list[GenerationRequest] = []

    async def canned(request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(request.request_id, "A red square.")
        yield Finished(request.request_id, "stop", Usage(5, 0, 3, 0.01, 10.0))

    async def local(self: Any, model: str, request: GenerationRequest, load_if_needed: bool,
                    release: Callable[[], None] | None) -> Generation:
        seen.append(request)
        stream = canned(request)
        return Generation(request, model, stream, await anext(stream), release)

    async def no_load(self: Hearth, model: Any, plan: Any = None, **_: Any) -> LoadedModel:
        return LoadedModel(STARTER_MODEL, "smollm2.gguf", 2048, 1, 8192, 30, 0, 2, "gguf",
                           vision=True)

    monkeypatch.setattr(dispatch.Dispatcher, "_local", local)
    monkeypatch.setattr(Hearth, "load", no_load)
    return seen


def _drop(target: object, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    QApplication.sendEvent(target, QDragEnterEvent(  # type: ignore[arg-type]
        QPoint(20, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier))
    QApplication.sendEvent(target, QDropEvent(  # type: ignore[arg-type]
        QPointF(20, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier))


def _paste(qtbot: QtBot, chat: ChatPage, mime: QMimeData) -> None:
    QApplication.clipboard().setMimeData(mime)
    chat.composer.setFocus()
    qtbot.keyClick(chat.composer, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    # The clipboard owns the data now and frees it when the application goes: emptied here,
    # so nothing is left for that (the test process crashed at exit, after every test passed).
    QApplication.clipboard().clear()


def _tray(chat: ChatPage) -> list[bytes]:
    return [image.data for image in chat.input.images.images()]


def test_attach_by_button_paste_and_drop_then_enlarge_and_remove(
        qtbot: QtBot, window: MainWindow, files: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    chat = window.chat
    assert chat.input.image_button.accessibleName() == "Attach images"

    # The button: a file dialog; the image is attached, the others said by name, inline.
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(
        lambda *_a: ([str(files["red"]), str(files["notes"]), str(files["fake"]),
                      str(files["broken"])], "")))
    qtbot.mouseClick(chat.input.image_button, Qt.MouseButton.LeftButton)
    assert _tray(chat) == [RED]
    notice = chat.input.image_notice.text()
    assert chat.input.image_notice.isVisible()
    assert "notes.txt isn't a PNG, JPEG, WebP or GIF image" in notice
    assert "fake.png isn't a PNG, JPEG, WebP or GIF image" in notice
    assert "broken.png couldn't be read" in notice
    assert chat.composer.toPlainText() == ""  # nothing else happened

    # Paste: an image (a screenshot) and an image file copied in a file manager.
    shot = QImage(24, 12, QImage.Format.Format_RGB32)
    shot.fill(QColor("green"))
    mime = QMimeData()
    mime.setImageData(shot)
    _paste(qtbot, chat, mime)
    copied = QMimeData()
    copied.setUrls([QUrl.fromLocalFile(str(files["blue"]))])
    _paste(qtbot, chat, copied)
    pasted = chat.input.images.images()
    assert len(pasted) == 3 and pasted[1].media_type == "image/png"
    assert QImage.fromData(pasted[1].data).size() == shot.size()
    assert pasted[2].data == BLUE
    assert not chat.input.image_notice.isVisible()  # the last attach went well
    assert chat.composer.toPlainText() == ""  # no path pasted as text

    # Drop on the message box: images go to the tray, not to the documents.
    _drop(chat.composer.viewport(), [files["red"]])
    assert len(_tray(chat)) == 4 and _tray(chat)[3] == RED
    assert chat.documents.bar.chips == []

    # Thumbnails: a click enlarges one; × removes one.
    thumbs = chat.input.images.thumbs
    assert thumbs[0].accessibleName() == "Image 1, red.png: open it larger"
    qtbot.mouseClick(thumbs[0], Qt.MouseButton.LeftButton)
    viewer = thumbs[0].viewer
    assert isinstance(viewer, ImageViewer) and viewer.isVisible()
    assert viewer.image.data == RED
    picture = viewer.findChild(QLabel, "image_viewer_picture")
    assert picture is not None and picture.accessibleName() == "PNG image, 40 by 30 pixels"
    viewer.close()
    buttons = [b for b in chat.input.images.findChildren(QToolButton)
               if b.objectName() == "image_remove"]
    qtbot.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
    assert len(_tray(chat)) == 3 and _tray(chat)[0] != RED


def test_a_text_only_model_is_said_before_send(
        qtbot: QtBot, window: MainWindow, files: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chat, store = window.chat, window._hearth.history
    chat.images.add([str(files["red"])])
    qtbot.keyClicks(chat.composer, "What is this?")
    assert not chat.send_button.isEnabled()
    hint = chat.input.hint.text()
    assert "can't see images, and no installed model can" in hint
    assert chat.send_button.toolTip() == hint  # Send says why it is disabled
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    assert store.list_conversations() == []  # nothing was sent

    # With a vision model installed, the sentence names it, and the picker marks it.
    vision_starter(monkeypatch, tmp_path)
    other = LocalModel("plain:1b", tmp_path / "plain.gguf", "file")
    real = Hearth.models
    monkeypatch.setattr(Hearth, "models", lambda self: [*real(self), other])
    chat.refresh_models()
    picker = chat.model_picker
    row = picker.findData(STARTER_MODEL)
    assert picker.itemText(row).endswith("· vision")
    assert "vision model" in picker.itemData(row, Qt.ItemDataRole.AccessibleTextRole)
    assert not picker.itemIcon(row).isNull()
    plain = picker.findData("plain:1b")
    assert picker.itemText(plain) == "plain:1b"
    chat.show_model_choice("plain:1b")
    chat.indicators.refresh()
    assert not chat.send_button.isEnabled()
    assert "plain:1b can't see images. Pick a vision model (" in chat.input.hint.text()
    assert chat.chooser.vision[STARTER_MODEL] in chat.input.hint.text()

    # Removing the image lets the text go; picking the vision model lets both go.
    chat.input.images.remove(0)
    assert chat.send_button.isEnabled()
    chat.images.add([str(files["red"])])
    assert not chat.send_button.isEnabled()
    chat.show_model_choice(STARTER_MODEL)
    chat.indicators.refresh()
    assert chat.send_button.isEnabled()


def test_images_are_stored_restored_sent_again_and_exported(
        qtbot: QtBot, window: MainWindow, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, captured: list[GenerationRequest]) -> None:
    vision_starter(monkeypatch, tmp_path)
    chat, hearth = window.chat, window._hearth
    chat.refresh_models()
    chat.show_model_choice(STARTER_MODEL)
    chat.images.add([str(files["red"]), str(files["blue"])])
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.keyClicks(chat.composer, "What colours are these?")
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.streaming)
    assert _tray(chat) == []  # the tray went with the message

    # The real request: the stored turn with its images, before its text.
    (user,) = [m for m in captured[0].messages or () if m.role == "user"]
    assert [im.data for im in user.images] == [RED, BLUE]
    assert user.content == "What colours are these?"

    # Stored in the data folder, referenced from the message.
    conversation = chat.conversation_id
    assert conversation is not None
    stored = hearth.history.messages(conversation)[0].images
    data_dir = hearth.history.path.parent
    assert [im.path.read_bytes() for im in stored] == [RED, BLUE]
    assert all(im.path.is_relative_to(data_dir / "images") for im in stored)
    sent_view = chat.transcript.messages()[0]
    assert isinstance(sent_view.attachments, MessageImages)
    assert len(sent_view.attachments.thumbs) == 2

    # Reopened: shown again, and a click on the shown thumbnail enlarges it.
    chat.new_chat()
    assert chat.open_conversation(conversation)
    row = chat.transcript.messages()[0].attachments
    assert isinstance(row, MessageImages)
    assert [im.data for im in row.images] == [RED, BLUE]
    qtbot.mouseClick(row.thumbs[1], Qt.MouseButton.LeftButton)
    assert row.thumbs[1].viewer is not None and row.thumbs[1].viewer.image.data == BLUE
    row.thumbs[1].viewer.close()

    # The next turn sends them again.
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.keyClicks(chat.composer, "Which is bigger?")
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.streaming)
    first_user = next(m for m in captured[1].messages or () if m.role == "user")
    assert [im.data for im in first_user.images] == [RED, BLUE]

    # Both exports keep them: Markdown beside the file, JSON inline.
    target = tmp_path / "out" / "colours.md"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *_a: (str(target), "")))
    assert window.sidebar.export_conversation(conversation, "markdown") == target
    markdown = target.read_text(encoding="utf-8")
    for image, data in zip(stored, (RED, BLUE), strict=True):
        assert f"(colours_images/{image.path.name})" in markdown
        assert (target.parent / "colours_images" / image.path.name).read_bytes() == data
    as_json = tmp_path / "out" / "colours.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *_a: (str(as_json), "")))
    window.sidebar.export_conversation(conversation, "json")
    images = json.loads(as_json.read_text(encoding="utf-8"))["messages"][0]["images"]
    assert [base64.b64decode(im["data"]) for im in images] == [RED, BLUE]


def test_editing_a_message_brings_its_images_back(
        qtbot: QtBot, window: MainWindow, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, captured: list[GenerationRequest]) -> None:
    vision_starter(monkeypatch, tmp_path)
    chat = window.chat
    chat.refresh_models()
    chat.show_model_choice(STARTER_MODEL)
    chat.images.add([str(files["red"])])
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.keyClicks(chat.composer, "What is it?")
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.streaming)
    chat.edit_message(chat.transcript.messages()[0])
    assert _tray(chat) == [RED]
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.streaming)
    (user,) = [m for m in captured[-1].messages or () if m.role == "user"]
    assert [im.data for im in user.images] == [RED]
    stored = window._hearth.history.messages(chat.conversation_id or 0)[0].images
    assert stored[0].path.read_bytes() == RED  # the file survived the edit's delete


@pytest.mark.slow
def test_vision_reply_end_to_end(qtbot: QtBot, window: MainWindow, files: dict[str, Path],
                                 tmp_path: Path, smollm2_path: Path) -> None:
    """The real path: the starter paired with a random-weight projector (the reply is noise),
    an image attached by the button's path, loaded with the projector, encoded and answered;
    the follow-up turn sends the image again and finds it in the prompt cache."""
    synth = pytest.importorskip("tests.fixtures.synth_mmproj")
    projector = synth.write_projector(tmp_path / "mmproj-tiny.gguf", synth.ProjectorShape())
    chat, hearth = window.chat, window._hearth
    model_file = tmp_path / "smol-vision.gguf"  # the starter's weights, imported as a file
    try:
        os.link(smollm2_path, model_file)
    except OSError:  # another file system
        shutil.copyfile(smollm2_path, model_file)
    model = hearth.import_model(model_file, projector).id
    chat.refresh_models()
    chat.show_model_choice(model)
    assert model in chat.chooser.vision
    chat.images.add([str(files["red"])])
    assert chat.send_button.isEnabled(), chat.input.hint.text()
    finished = []
    for text in ("Describe it.", "And the colour?"):
        with qtbot.waitSignal(chat.reply_finished, timeout=180_000) as done:
            qtbot.keyClicks(chat.composer, text)
            qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not chat.streaming, timeout=30_000)
        finished.append(done.args[0])
    assert hearth.loaded is not None and hearth.loaded.vision
    first, second = (event.usage for event in finished)
    assert [e.finish_reason for e in finished] == ["length", "length"]  # 8 tokens of noise
    image_tokens = synth.ProjectorShape().n_patches
    assert first.prompt_tokens > image_tokens
    # The second prompt starts with the first turn, image included: read from the cache.
    assert second.cached_prompt_tokens >= first.prompt_tokens - 1


def test_no_more_images_than_a_request_may_carry(qtbot: QtBot, window: MainWindow,
                                                 files: dict[str, Path]) -> None:
    chat = window.chat
    chat.images.add([str(files["red"])] * (MAX_ATTACHED + 2))
    assert len(chat.input.images.images()) == MAX_ATTACHED
    notice = chat.input.findChild(QLabel, "image_notice")
    assert notice is not None and f"at most {MAX_ATTACHED} images" in notice.text()


def test_an_image_chat_goes_on_with_a_text_only_model(
        qtbot: QtBot, window: MainWindow, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, captured: list[GenerationRequest]) -> None:
    """Switched to a model that can't see, the chat is not refused: each earlier image is
    said in words, and the stored images stay for a vision model later."""
    from backend.application.conversation import IMAGE_LEFT_OUT

    vision_starter(monkeypatch, tmp_path)
    plain = LocalModel("plain:1b", tmp_path / "plain.gguf", "file")
    with_vision = Hearth.models
    monkeypatch.setattr(Hearth, "models", lambda self: [*with_vision(self), plain])
    chat = window.chat
    chat.refresh_models()
    chat.show_model_choice(STARTER_MODEL)
    chat.images.add([str(files["red"])])
    send(qtbot, chat, "What colour is it?", TIMEOUT_MS)
    chat.show_model_choice("plain:1b")
    chat.indicators.refresh()
    assert chat.send_button.isEnabled()  # nothing in the tray: the text may go
    send(qtbot, chat, "Name a fruit of that colour.", TIMEOUT_MS)
    first = next(m for m in captured[-1].messages or () if m.role == "user")
    assert first.images == () and first.content == f"{IMAGE_LEFT_OUT}\nWhat colour is it?"
    conversation = chat.conversation_id
    assert conversation is not None
    assert len(window._hearth.history.messages(conversation)[0].images) == 1  # still kept
