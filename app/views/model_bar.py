"""The strip above the chat: the model picker, load progress and the planner's verdict.

The picker lists local models (a vision model, one that can see images, is marked with an eye
and "vision", in its accessible name too), then each remote connection's models tagged by
connection (a connection that didn't answer is a disabled row whose tooltip says why). It only
shows; the model chooser decides what picking a row means. GUI thread only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QProgressBar, QWidget

from app.icons import icon
from app.views.elided_label import ElidedLabel
from backend.api import RemoteStatus

REMOTE_ROLE = Qt.ItemDataRole.UserRole + 1  # picker rows that came from a connection


class ModelBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picker = QComboBox(self)
        self.picker.setObjectName("model_picker")
        self.picker.setToolTip("Pick the model to chat with (Ctrl+K)")
        # The chat page fits an 800 px window with the panel open, the context meter beside.
        self.picker.setMinimumWidth(160)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("load_progress")
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        # The planner's sentence can be long: it must never widen the window, nor be cut
        # mid-word, so it shows the whole words that fit, then "…" (all of it on hover).
        self.verdict = ElidedLabel(self)
        self.verdict.setObjectName("verdict_label")
        self.verdict.setMinimumWidth(0)  # the first to give way (it is all on hover)
        self.remote_ids: set[str] = set()
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.picker)
        self._layout.addWidget(self.progress)
        self._layout.addWidget(self.verdict, 1)

    def add_trailing(self, widget: QWidget) -> None:
        """A widget at the right end (the chat's context meter)."""
        self._layout.addSpacing(12)
        self._layout.addWidget(widget)

    # -- the picker's rows -----------------------------------------------------------------
    def set_local(self, model_ids: list[str], current: str | None,
                  vision: Collection[str] = ()) -> None:
        """Local rows only (remote rows come back with the next ``set_remote``); ``vision``:
        the ids of models that can see images."""
        picker = self.picker
        picker.blockSignals(True)
        picker.clear()
        for model_id in model_ids:
            if model_id in vision:
                picker.addItem(icon("eye"), f"{model_id}  · vision", model_id)
                index = picker.count() - 1
                picker.setItemData(index, f"{model_id}, vision model: can see images",
                                   Qt.ItemDataRole.AccessibleTextRole)
                picker.setItemData(index, "Can see images (it has a vision projector)",
                                   Qt.ItemDataRole.ToolTipRole)
            else:
                picker.addItem(model_id, model_id)
        if not model_ids:
            picker.addItem("No models yet: open Models to get one", None)
        if current is not None:
            index = picker.findData(current)
            if index < 0:
                picker.addItem(current, current)
                index = picker.count() - 1
            picker.setCurrentIndex(index)
        picker.blockSignals(False)

    def set_remote(self, statuses: Sequence[RemoteStatus], current: str | None) -> None:
        """The connections' rows, as each last answered: its models as
        ``<connection>/<model>``, or one disabled row saying why it didn't."""
        picker = self.picker
        picker.blockSignals(True)
        try:
            for index in range(picker.count() - 1, -1, -1):  # drop the last listing
                if picker.itemData(index, REMOTE_ROLE):
                    picker.removeItem(index)
            models = [(s.name, f"{s.name}/{model}") for s in statuses for model in s.models]
            failed = [(s.name, s.error) for s in statuses if s.error is not None]
            self.remote_ids = {model_id for _name, model_id in models}
            if models or failed:
                picker.insertSeparator(picker.count())
                picker.setItemData(picker.count() - 1, True, REMOTE_ROLE)
            for name, model_id in models:
                picker.addItem(f"{model_id}  ({name})", model_id)
                picker.setItemData(picker.count() - 1, True, REMOTE_ROLE)
            for name, error in failed:
                picker.addItem(f"{name}: unavailable", None)
                index = picker.count() - 1
                picker.setItemData(index, True, REMOTE_ROLE)
                picker.setItemData(index, error.user_message, Qt.ItemDataRole.ToolTipRole)
                item = picker.model().item(index)  # type: ignore[attr-defined]
                if item is not None:
                    item.setEnabled(False)
            if current is not None:
                index = picker.findData(current)
                if index >= 0:
                    picker.setCurrentIndex(index)
        finally:
            picker.blockSignals(False)

    # -- load state ------------------------------------------------------------------------
    def show_loading(self, name: str) -> None:
        self.verdict.setText(f"Loading {name}…")
        self.progress.setValue(0)
        self.progress.show()

    def show_progress(self, fraction: float) -> None:
        self.progress.setValue(round(fraction * 100))

    def show_verdict(self, text: str, tooltip: str) -> None:
        self.progress.hide()
        self.verdict.setText(text)
        self.verdict.setToolTip(tooltip)
