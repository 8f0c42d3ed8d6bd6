"""Images in the chat, as widgets: a thumbnail that opens a viewer, the composer's tray of
images about to be sent (each removable), and the row of images above a sent message.

An image is held as ``ChatImage``: its bytes and kind, checked once when it is attached
(``read_image``): the bytes must start as a PNG, JPEG, WebP or GIF and Qt must be able to decode
them, so a damaged or truncated file is said when it is attached, not when the model is asked.
Thumbnails are decoded at thumbnail size (``QImageReader.setScaledSize``: a 24-megapixel
JPEG is not decoded whole to draw 64 pixels).

Threading contract: GUI thread only (QPixmap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt, Signal
from PySide6.QtGui import QImage, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backend.api import (
    IMAGE_MEDIA_TYPES,
    MAX_IMAGE_PIXELS,
    ImageSettings,
    StoredImage,
    sniff_media_type,
)

THUMB = 64  # px, the longer side of a thumbnail in the composer
SENT_THUMB = 160  # and above a sent message, where there is room to see what it was
KINDS = "PNG, JPEG, WebP or GIF"
#: What a request may carry, checked when attached so nothing is refused only at Send: the
#: application layer's and the engine's own limits (Qt could decode up to ~100 megapixels).
MAX_BYTES = ImageSettings().max_image_bytes
MAX_PIXELS = MAX_IMAGE_PIXELS
MAX_ATTACHED = ImageSettings().max_images


class ImageProblem(Exception):
    """An image that can't be attached; ``str()`` is the sentence to show."""


@dataclass(frozen=True, eq=False)
class ChatImage:
    data: bytes
    media_type: str
    name: str = ""  # the file's name, when it came from a file (shown on hover)

    @property
    def kind(self) -> str:
        return IMAGE_MEDIA_TYPES.get(self.media_type, "image").upper().replace("JPG", "JPEG")


def check_image(data: bytes, name: str) -> ChatImage:
    """``data`` as an attachable image, or ``ImageProblem`` saying why not."""
    if len(data) > MAX_BYTES:
        raise ImageProblem(f"{name} is {len(data) / 2**20:.0f} MB; images up to "
                           f"{MAX_BYTES // 2**20} MB can be attached.")
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ImageProblem(f"{name} isn't a {KINDS} image, so it wasn't attached.")
    size = _reader(data).size()
    if size.width() * size.height() > MAX_PIXELS:
        raise ImageProblem(f"{name} is {size.width():,} × {size.height():,} pixels; images "
                           f"up to {MAX_PIXELS // 1_000_000} megapixels can be attached.")
    if size.isEmpty() or thumbnail(data).isNull():
        raise ImageProblem(f"{name} couldn't be read: the image looks damaged or incomplete.")
    return ChatImage(data, media_type, name)


def read_image(path: str | Path) -> ChatImage:
    """The image file at ``path``, checked (``ImageProblem`` when it can't be attached)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ImageProblem(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; images "
                               f"up to {MAX_BYTES // 2**20} MB can be attached.")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageProblem(f"{path.name} couldn't be opened ({exc.strerror or exc}).") from exc
    return check_image(data, path.name)


def stored_image(image: StoredImage) -> ChatImage | None:
    """A history image to show again (None: its file is gone from the data folder)."""
    try:
        return ChatImage(image.path.read_bytes(), image.media_type, image.path.name)
    except OSError:
        return None


def _reader(data: bytes) -> QImageReader:
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setAutoTransform(True)
    reader._buffer = buffer  # type: ignore[attr-defined]  # kept alive with the reader
    return reader


def thumbnail(data: bytes, side: int = THUMB) -> QPixmap:
    """The image scaled to fit ``side`` px, decoded at that size where the format allows."""
    reader = _reader(data)
    size = reader.size()
    if size.isValid() and not size.isEmpty():
        reader.setScaledSize(size.scaled(QSize(side, side), Qt.AspectRatioMode.KeepAspectRatio))
    return QPixmap.fromImage(reader.read())


class ImageViewer(QDialog):
    """The image at full size (scrolling when it is bigger than the screen allows)."""

    def __init__(self, image: ChatImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("image_viewer")
        self.setWindowTitle(image.name or "Image")
        self.image = image
        pixmap = QPixmap.fromImage(QImage.fromData(image.data))
        picture = QLabel(self)
        picture.setObjectName("image_viewer_picture")
        picture.setPixmap(pixmap)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture.setAccessibleName(f"{image.kind} image, {pixmap.width()} by "
                                  f"{pixmap.height()} pixels")
        scroll = QScrollArea(self)
        scroll.setWidget(picture)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addWidget(scroll, 1)
        column.addWidget(buttons)
        self.resize(min(pixmap.width() + 48, 1100), min(pixmap.height() + 90, 800))


class ImageThumb(QToolButton):
    """One image as a thumbnail; a click opens it in a viewer."""

    def __init__(self, image: ChatImage, number: int, parent: QWidget | None = None, *,
                 side: int = THUMB) -> None:
        super().__init__(parent)
        self.image = image
        self.viewer: ImageViewer | None = None
        self.setObjectName("image_thumb")
        pixmap = thumbnail(image.data, side)
        self.setIcon(pixmap)
        self.setIconSize(pixmap.size())
        self.setAutoRaise(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        label = f"Image {number}" + (f", {image.name}" if image.name else "")
        self.setToolTip(f"{label} ({image.kind}): click to enlarge")
        self.setAccessibleName(f"{label}: open it larger")
        self.clicked.connect(self.enlarge)

    def enlarge(self) -> ImageViewer:
        self.viewer = ImageViewer(self.image, self.window())
        self.viewer.open()
        return self.viewer


class ImageTray(QWidget):
    """The images attached to the message being written, each with × to remove it."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("image_tray")
        self._images: list[ChatImage] = []
        self.thumbs: list[ImageThumb] = []
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 2, 0, 2)
        self._row.setSpacing(6)
        self._row.addStretch(1)
        self.hide()

    def images(self) -> list[ChatImage]:
        return list(self._images)

    def add(self, image: ChatImage) -> None:
        self._images.append(image)
        self._redraw()

    def set_images(self, images: list[ChatImage]) -> None:
        self._images = list(images)
        self._redraw()

    def remove(self, index: int) -> None:
        del self._images[index]
        self._redraw()

    def clear(self) -> None:
        self.set_images([])

    def _redraw(self) -> None:
        while self._row.count() > 1:
            item = self._row.takeAt(0)
            if item is not None and item.widget() is not None:
                item.widget().deleteLater()
        self.thumbs = []
        for index, image in enumerate(self._images):
            cell = QWidget(self)
            cell.setObjectName("image_tray_cell")
            thumb = ImageThumb(image, index + 1, cell)
            remove = QToolButton(cell)
            remove.setObjectName("image_remove")
            remove.setText("×")
            remove.setAutoRaise(True)
            remove.setToolTip(f"Remove image {index + 1}")
            remove.setAccessibleName(f"Remove image {index + 1}")
            remove.clicked.connect(lambda _=False, i=index: self.remove(i))
            box = QHBoxLayout(cell)
            box.setContentsMargins(0, 0, 0, 0)
            box.setSpacing(0)
            box.addWidget(thumb)
            box.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)
            self._row.insertWidget(index, cell)
            self.thumbs.append(thumb)
        self.setVisible(bool(self._images))
        self.changed.emit()


class MessageImages(QWidget):
    """The images a sent message carried, above its text; each opens larger on a click."""

    def __init__(self, images: list[ChatImage], missing: int = 0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("message_images")
        self.images = images
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.thumbs = [ImageThumb(image, n, self, side=SENT_THUMB)
                       for n, image in enumerate(images, 1)]
        for thumb in self.thumbs:
            row.addWidget(thumb)
        if missing:
            gone = QLabel(f"{missing} image{'s' if missing > 1 else ''} no longer in the data "
                          "folder", self)
            gone.setObjectName("message_images_missing")
            row.addWidget(gone)
        row.addStretch(1)
