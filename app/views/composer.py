"""The message box: Enter sends, Shift+Enter adds a line; a pasted image is attached.

Ctrl+V of an image (a screenshot, an image copied in a browser) or of image files (copied in
a file manager) emits ``images_pasted`` instead of inserting text: the chat attaches them as
images. Anything else pastes as plain text. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import QFontMetrics, QImage, QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from backend.api import IMAGE_MEDIA_TYPES, IMAGE_SUFFIXES

_SEND_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class Composer(QPlainTextEdit):
    """A multi-line input that emits ``submitted`` instead of inserting a bare newline.

    It never clears itself: the window decides whether the text was accepted (a reply may
    still be streaming, or no model is loaded yet), so nothing the user typed gets lost.
    """

    submitted = Signal()
    images_pasted = Signal(list)  # list[str | bytes]: image file paths, or an image's bytes

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setTabChangesFocus(True)  # Tab moves on to the buttons, like a form field
        self.setPlaceholderText("Message Hearth  (Enter sends, Shift+Enter adds a line)")
        # Three lines tall: room for a short paragraph without eating the transcript.
        line = QFontMetrics(self.font()).lineSpacing()
        margins = self.contentsMargins()
        self.setFixedHeight(3 * line + 2 * int(self.document().documentMargin())
                            + margins.top() + margins.bottom() + 4)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in _SEND_KEYS:
            mods = event.modifiers()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                # Qt's default for Shift+Enter is a soft line break (U+2028); a real paragraph
                # break is what the user means and what the model should see.
                self.insertPlainText("\n")
                return
            if not mods & ~Qt.KeyboardModifier.KeypadModifier:
                self.submitted.emit()
                return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return bool(pasted_images(source)) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        images = pasted_images(source)
        if images:
            self.images_pasted.emit(images)
            return
        super().insertFromMimeData(source)


def pasted_images(mime: QMimeData) -> list[str | bytes]:
    """The images a paste carries: image files' paths, else the image itself, as the bytes
    the source offered (PNG, JPEG… kept as they are) or, failing that, encoded as PNG."""
    files: list[str | bytes] = [
        url.toLocalFile() for url in mime.urls() if url.isLocalFile()
        and Path(url.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES]
    if files or not mime.hasImage():
        return files
    for media_type in IMAGE_MEDIA_TYPES:
        if mime.hasFormat(media_type):
            return [bytes(mime.data(media_type).data())]
    image = mime.imageData()
    if not isinstance(image, QImage) or image.isNull():
        return []
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return [bytes(buffer.data().data())]
