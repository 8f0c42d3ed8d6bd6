"""Images in the chat page: attaching them (the button's file dialog, a paste, a drop), showing
them above sent messages, and saying before Send when the picked model can't see them.

``ChatImages`` feeds the composer's tray: every file or pasted image is checked as it comes
(``read_image``/``check_image``); one that can't be attached is said by name in the note above
the box, and the others are attached all the same. The tray changing refreshes Send: with
images attached and a local model without a vision projector picked, Send is unavailable and
the sentence beside it names the installed models that can see images (``vision_block``).
A connection's model is not judged: its server answers for itself.

Images go into the history with their message (``ChatStore.add_message(images=…)``), as files
in the data folder; reopening a chat shows them again (``show_message_images``), and each
later turn sends them again (``prompt_messages``).

Threading contract: GUI thread only; a message's image files are written to the data folder
off it (``add_turn``). Reading a chosen file is a local read of at most ``MAX_BYTES``;
thumbnails decode at thumbnail size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, cast

from PySide6.QtCore import QObject, Signal, SignalInstance
from PySide6.QtWidgets import QFileDialog

from app.views.chat_input import ChatInput
from app.views.image_widgets import (
    MAX_ATTACHED,
    ChatImage,
    ImageProblem,
    MessageImages,
    check_image,
    read_image,
    stored_image,
)
from app.views.transcript import MessageView, TranscriptView
from backend.api import IMAGE_SUFFIXES, ChatStore, StoredImage, StoredMessage
from backend.errors import BackendError

_DIALOG_FILTER = ("Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
                  + ");;All files (*)")


class _Drops(Protocol):
    images_dropped: SignalInstance


class _Documents(Protocol):
    drops: _Drops


class _Indicators(Protocol):
    def refresh(self) -> None: ...


class _Replies(Protocol):
    refused: SignalInstance


class ChatPageParts(Protocol):
    """The chat page as its images see it (a protocol: the page imports this module)."""

    input: ChatInput
    documents: _Documents
    indicators: _Indicators
    replies: _Replies
    problem: SignalInstance


def vision_block(*, attached: int, model: str | None, model_name: str, remote: bool,
                 vision: dict[str, str]) -> str | None:
    """Why Send is unavailable with ``attached`` images and ``model`` picked, or None when it
    may go. ``vision``: the installed models that can see images, id → display name."""
    if not attached or model is None or remote or model in vision:
        return None
    them = "it" if attached == 1 else "them"
    if not vision:
        return (f"{model_name} can't see images, and no installed model can: get a vision "
                f"model on the Models page (Ctrl+2), or remove the image{'s' * (attached > 1)}"
                " to send the text.")
    names = ", ".join(sorted(vision.values()))
    return (f"{model_name} can't see images. Pick a vision model ({names}) to send "
            f"{them}, or remove {them} to send the text.")


def show_message_images(view: MessageView, images: Sequence[ChatImage | StoredImage]) -> None:
    """The images a sent message carried, above its text (history images read from the data
    folder; one whose file is gone is counted, not shown)."""
    if not images:
        return
    shown = [im if isinstance(im, ChatImage) else stored_image(im) for im in images]
    present = [im for im in shown if im is not None]
    view.show_attachments(MessageImages(present, len(shown) - len(present), view))


class ChatImages(QObject):
    """The chat input's images: what adds them, and the note when one can't be added."""

    attached = Signal()  # images were added (tests wait on it)
    problem = Signal(str)

    def __init__(self, page: ChatPageParts) -> None:
        """Wire ``page``: its input's image button and pastes, image files dropped on it, Send
        refreshed as the tray changes, a refused reply's images given back."""
        super().__init__(cast(QObject, page))
        self._input = page.input
        self.tray = page.input.images
        self.sent: list[ChatImage] = []  # the last message's (given back if refused)
        page.input.image_button.clicked.connect(self.choose)
        page.input.composer.images_pasted.connect(self.add)
        page.documents.drops.images_dropped.connect(self.add)
        self.tray.changed.connect(page.indicators.refresh)
        page.replies.refused.connect(self.give_back)
        self.problem.connect(page.problem)

    def choose(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self._input, "Attach images", str(Path.home()),
                                                _DIALOG_FILTER)
        if paths:
            self.add(paths)

    def add(self, items: Iterable[str | bytes]) -> None:
        """Attach each image file (a path) or pasted image (bytes); one that can't be
        attached is said by name above the box, and nothing else happens to it."""
        problems: list[str] = []
        added = 0
        for item in items:
            if len(self.tray.images()) >= MAX_ATTACHED:
                problems.append(f"A message can carry at most {MAX_ATTACHED} images; the "
                                "rest weren't attached.")
                break
            try:
                image = read_image(item) if isinstance(item, str) else check_image(
                    item, "The pasted image")
            except ImageProblem as problem:
                problems.append(str(problem))
                continue
            self.tray.add(image)
            added += 1
        self._input.show_image_notice(" ".join(problems) or None)
        if added:
            self.attached.emit()

    async def add_turn(self, store: ChatStore, transcript: TranscriptView, conversation: int,
                       text: str) -> tuple[StoredMessage, MessageView] | None:
        """Store the person's message with the tray's images (files in the data folder, the
        message referencing them) and show it; the box and the tray empty. None when the
        store refused (said on ``problem``; text and images go back where they were).

        With images, the files are written off the GUI thread (megabytes, fsynced); the box
        and the tray empty first, so a second Enter meanwhile has nothing to send again."""
        images = self.tray.images()
        self.tray.clear()
        self._input.composer.clear()
        try:
            if images:
                stored = await asyncio.to_thread(store.add_message, conversation, "user", text,
                                                 images=[image.data for image in images])
            else:  # a millisecond's SQLite write: no thread hop
                stored = store.add_message(conversation, "user", text)
        except BackendError as exc:
            self.tray.set_images(images)
            self._input.give_back(text)
            self.problem.emit(exc.user_message)
            return None
        self.sent = images
        self._input.show_image_notice(None)
        view = transcript.add_message("user", text, message_id=stored.id)
        show_message_images(view, images)
        return stored, view

    def give_back(self, _text: str = "") -> None:
        """The last message's reply was refused: its images go back to the tray (unless
        others were added meanwhile), as its text goes back to the box."""
        if self.sent and not self.tray.images():
            self.tray.set_images(self.sent)
