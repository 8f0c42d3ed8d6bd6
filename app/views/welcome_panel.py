"""The welcome at the top of the Models page, until the person has a model of their own.

It offers the built-in starter (instant) and the catalog model this computer runs best. It
retires for good once a model was picked (the starter, or anything else: the saved default
model), a model of their own is on disk, or the person hides it; ``DownloadedTab`` decides.
Discover's cards carry the same recommendation (a "Recommended" tag), so nothing is lost.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from app.views.fit_badge import fit_html
from backend.api import STARTER_ID, BestPick, human_size


class WelcomePanel(QWidget):
    """First steps while the library holds only the built-in starter: use it now, or fetch the
    model this computer runs best."""

    model_chosen = Signal(str)
    download_requested = Signal(object)  # BestPick
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome_panel")
        self._pick: BestPick | None = None
        title = QLabel("<b>Welcome to Hearth.</b> Chat right away with the built-in model, or "
                       "download one sized for this computer.", self)
        title.setObjectName("welcome_title")
        title.setWordWrap(True)
        self.dismiss_button = QToolButton(self)
        self.dismiss_button.setObjectName("welcome_dismiss")
        self.dismiss_button.setText("✕")
        self.dismiss_button.setToolTip("Hide the welcome")
        self.dismiss_button.setAccessibleName("Hide the welcome")
        self.dismiss_button.setAutoRaise(True)
        self.dismiss_button.clicked.connect(self.dismissed)
        self.starter_button = QPushButton("Start with SmolLM2 135M (built in, no download)",
                                          self)
        self.starter_button.setObjectName("starter_button")
        self.starter_button.clicked.connect(lambda: self.model_chosen.emit(STARTER_ID))
        self.best_pick_button = QPushButton(self)
        self.best_pick_button.setObjectName("best_pick_button")
        self.best_pick_button.clicked.connect(self._request_download)
        self.pick_reason = QLabel(self)
        self.pick_reason.setObjectName("pick_reason")
        self.pick_reason.setWordWrap(True)
        # One above the other: side by side they held the window wider than 800 px.
        buttons = QVBoxLayout()
        buttons.addWidget(self.starter_button, 0, Qt.AlignmentFlag.AlignLeft)
        buttons.addWidget(self.best_pick_button, 0, Qt.AlignmentFlag.AlignLeft)
        top = QHBoxLayout()
        top.addWidget(title, 1)
        top.addWidget(self.dismiss_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addWidget(self.pick_reason)
        self.set_best_pick(None)

    @property
    def best_pick(self) -> BestPick | None:
        return self._pick

    def set_best_pick(self, pick: BestPick | None) -> None:
        self._pick = pick
        self.best_pick_button.setVisible(pick is not None)
        self.pick_reason.setVisible(pick is not None)
        if pick is None:
            return
        self.best_pick_button.setText(f"Download {pick.entry.alias} "
                                      f"({human_size(pick.size_bytes)}, {pick.fit.label})")
        self.best_pick_button.setToolTip(pick.entry.description)
        self.best_pick_button.setAccessibleName(
            f"Download {pick.entry.alias}, recommended for this computer: {pick.fit.label}")
        self.pick_reason.setText(f"{fit_html(pick.fit)} — {pick.fit.reason}")

    def _request_download(self) -> None:
        if self._pick is not None:
            self.download_requested.emit(self._pick)
