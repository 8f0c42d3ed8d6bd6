"""The bottom of the chat: the composer, Send and Stop, and the note while a message is edited.

It holds what was typed and which sent message is being edited; the chat page decides when a
message may be sent, and says so through ``set_state``, with the reason when it may not: Send
is never grey without a sentence beside it saying why. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.views.composer import Composer
from app.views.transcript import MessageView


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
        self.hint = QLabel(self)  # why Send is unavailable, or what happens on Send
        self.hint.setObjectName("send_hint")
        self.hint.setWordWrap(True)
        self.hint.hide()
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("send_button")
        self.send_button.setDefault(True)
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self.send_requested)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.setAccessibleName("Stop reply")
        self.stop_button.clicked.connect(self.stop_requested)
        for button in (self.send_button, self.stop_button):
            button.setMinimumWidth(96)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.setContentsMargins(16, 4, 16, 12)
        row.addWidget(self.composer, 1)
        row.addLayout(buttons)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.edit_notice)
        column.addLayout(row)
        column.addWidget(self.hint)
        self.hint.setContentsMargins(18, 0, 16, 8)
        self.setTabOrder(self.composer, self.send_button)
        self.setTabOrder(self.send_button, self.stop_button)

    def text(self) -> str:
        return self.composer.toPlainText().strip()

    def set_state(self, *, can_send: bool, can_stop: bool, stopping: bool,
                  reason: str | None = None) -> None:
        """``reason``: why Send is unavailable (shown beside it), or a note about what Send
        will do (the model loads first)."""
        self.send_button.setEnabled(can_send)
        self.stop_button.setEnabled(can_stop)
        self.stop_button.setText("Stopping…" if stopping else "Stop")
        self.show_hint(reason)
        self.send_button.setToolTip("Send (Enter)" if can_send else (reason or ""))

    def show_hint(self, text: str | None) -> None:
        self.hint.setText(text or "")
        self.hint.setVisible(bool(text))

    def start_edit(self, view: MessageView) -> None:
        """Put a sent message back in the composer; Send replaces it and what followed."""
        self.editing = view
        self.composer.setPlainText(view.text())
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
        return True

    def give_back(self, text: str) -> None:
        """A message that was refused goes back in the box to shorten or retry (unless
        something new was typed meanwhile)."""
        if not self.composer.toPlainText():
            self.composer.setPlainText(text)
