"""The bottom of the chat: the composer, Send and Stop, and the note while a message is edited;
the images attached to the message (a tray of thumbnails in the box, the button that adds
them, and the note saying why a file wasn't attached).

It holds what was typed and which sent message is being edited; the chat page decides when a
message may be sent, and says so through ``set_state``, with the reason when it may not: Send
is never grey without a sentence beside it saying why. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.views.composer import Composer
from app.views.image_widgets import ImageTray
from app.views.reading_column import centre_in
from app.views.transcript import MessageView

SEND_SIZE = 34
SIDE_MARGIN = 16  # the composer's least side margin, as the transcript's (centre_in's default)


class ChatInput(QWidget):
    send_requested = Signal()  # Enter in the composer, or the Send button
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editing: MessageView | None = None  # the sent message Send will replace
        self.composer = Composer(self)
        self.composer.submitted.connect(self.send_requested)
        self.edit_notice = QLabel("Editing a message: Send replaces it and everything after "
                                  "it (Esc cancels).", self)
        self.edit_notice.setObjectName("edit_notice")
        self.edit_notice.hide()
        self.image_notice = QLabel(self)  # why a file wasn't attached as an image
        self.image_notice.setObjectName("image_notice")
        self.image_notice.setWordWrap(True)
        self.image_notice.hide()
        self.images = ImageTray(self)
        self.image_button = QPushButton(icon("image", "muted"), "", self)
        self.image_button.setObjectName("image_button")
        self.image_button.setIconSize(QSize(18, 18))
        self.image_button.setFixedSize(SEND_SIZE, SEND_SIZE)
        self.image_button.setFlat(True)
        self.image_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.image_button.setAccessibleName("Attach images")
        self.image_button.setToolTip("Attach images: PNG, JPEG, WebP or GIF (or paste them, "
                                     "or drop them on the message box)")
        self.hint = QLabel(self)  # why Send is unavailable, or what happens on Send
        self.hint.setObjectName("send_hint")
        self.hint.setWordWrap(True)
        self.hint.hide()
        # Send and Stop sit inside the rounded box, bottom right: Send a round accent icon,
        # Stop (only while this chat's reply streams) says its word beside its icon.
        self.box = QFrame(self)
        self.box.setObjectName("composer_box")
        self.composer.installEventFilter(self)  # the box draws the focus ring for it
        self.send_button = QPushButton(self)
        self.send_button.setObjectName("send_button")
        self.send_button.setIcon(icon("send", "on_accent"))
        self.send_button.setIconSize(QSize(18, 18))
        self.send_button.setFixedSize(SEND_SIZE, SEND_SIZE)
        self.send_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.send_button.setDefault(True)
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self.send_requested)
        self.stop_button = QPushButton(icon("stop", "text"), "Stop", self)
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setFixedHeight(SEND_SIZE)
        self.stop_button.hide()
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.setAccessibleName("Stop reply")
        self.stop_button.clicked.connect(self.stop_requested)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.setSpacing(6)
        bottom.addWidget(self.image_button)
        bottom.addWidget(self.hint, 1)  # beside Send: why it is unavailable, or what it does
        bottom.addStretch(0)
        bottom.addWidget(self.stop_button)
        bottom.addWidget(self.send_button)
        inside = QVBoxLayout(self.box)
        inside.setContentsMargins(10, 6, 8, 8)
        inside.setSpacing(2)
        inside.addWidget(self.images)
        inside.addWidget(self.composer)
        inside.addLayout(bottom)
        column = QVBoxLayout(self)
        column.setContentsMargins(SIDE_MARGIN, 4, SIDE_MARGIN, 12)
        column.setSpacing(4)
        column.addWidget(self.edit_notice)
        column.addWidget(self.image_notice)
        column.addWidget(self.box)
        centre_in(self, column, minimum=SIDE_MARGIN)  # lined up with the transcript
        self.setTabOrder(self.composer, self.image_button)
        self.setTabOrder(self.image_button, self.send_button)
        self.setTabOrder(self.send_button, self.stop_button)

    def minimumSizeHint(self) -> QSize:
        # The centring's side margins grow with the width. Counted in the minimum, they held
        # a window that had once been wide (1,600 px: 435 px for this alone) from being made
        # 800 px again: the window manager is told the minimum and refuses to go below it.
        hint = super().minimumSizeHint()
        margins = self.layout().contentsMargins()
        return QSize(hint.width() - margins.left() - margins.right() + 2 * SIDE_MARGIN,
                     hint.height())

    def text(self) -> str:
        return self.composer.toPlainText().strip()

    def set_state(self, *, can_send: bool, can_stop: bool, stopping: bool,
                  reason: str | None = None) -> None:
        """``reason``: why Send is unavailable (shown beside it), or a note about what Send
        will do (the model loads first)."""
        self.send_button.setEnabled(can_send)
        self.stop_button.setEnabled(can_stop)
        self.stop_button.setText("Stopping…" if stopping else "Stop")
        self.stop_button.setVisible(can_stop or stopping)
        self.show_hint(reason)
        self.send_button.setToolTip("Send (Enter)" if can_send else (reason or ""))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.composer and event.type() in (QEvent.Type.FocusIn,
                                                         QEvent.Type.FocusOut):
            self.box.setProperty("focused", event.type() == QEvent.Type.FocusIn)
            self.box.style().unpolish(self.box)
            self.box.style().polish(self.box)
        return super().eventFilter(watched, event)

    def show_image_notice(self, text: str | None) -> None:
        """Why files weren't attached as images (None: hide the note)."""
        self.image_notice.setText(text or "")
        self.image_notice.setVisible(bool(text))

    def show_hint(self, text: str | None) -> None:
        self.hint.setText(text or "")
        self.hint.setVisible(bool(text))

    def start_edit(self, view: MessageView) -> None:
        """Put a sent message back in the composer; Send replaces it and what followed."""
        self.editing = view
        self.composer.setPlainText(view.text())
        shown = view.attachments
        self.images.set_images(list(getattr(shown, "images", [])))
        self.edit_notice.show()
        self.composer.setFocus()

    def take_edit(self) -> MessageView | None:
        """The message being edited, which this send replaces (the edit ends)."""
        edited, self.editing = self.editing, None
        self.edit_notice.hide()
        return edited

    def cancel_edit(self) -> bool:
        if self.editing is None:
            return False
        self.editing = None
        self.edit_notice.hide()
        self.composer.clear()
        self.images.clear()  # they came with the edited message
        return True

    def give_back(self, text: str) -> None:
        """A message that was refused goes back in the box to shorten or retry (unless
        something new was typed meanwhile)."""
        if not self.composer.toPlainText():
            self.composer.setPlainText(text)
