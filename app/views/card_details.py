"""The Discover tab's right side: the picked model's card in full, and its files.

A title, its facts and description, a button for the variant that runs best on this machine
(with its fit), and the table of every variant with a fit badge and a Download button. A
catalog model shows the catalog's variants at once (sizes and fits estimated offline, marked
"about"); the Hub's exact files replace them when it answers. Problems with the Hub are not
shown here: the tab has one notice line for them.

Threading contract: GUI thread only; it asks for downloads through ``download_requested``.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QVBoxLayout, QWidget

from app.views.fit_badge import fit_html
from app.views.model_cards import ModelCard
from app.views.model_items import QuantsModel
from app.views.widgets import table
from backend.api import QuantChoice, human_size

PROMPT = "Pick a model to see its files and how each fits this computer."


class CardDetails(QWidget):
    download_requested = Signal(object)  # QuantChoice

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card_details")
        self._card: ModelCard | None = None
        self.title = QLabel(self)
        self.title.setObjectName("detail_title")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.text = QLabel(self)
        self.text.setObjectName("detail_text")
        self.text.setWordWrap(True)
        self.best_button = QPushButton(self)
        self.best_button.setObjectName("download_best_button")
        self.best_button.setAccessibleName("Download the best fit for this computer")
        self.best_button.clicked.connect(self._download_best)
        self.best_fit = QLabel(self)
        self.best_fit.setObjectName("best_fit")
        self.best_fit.setWordWrap(True)
        self.quant_status = QLabel(PROMPT, self)
        self.quant_status.setObjectName("quant_status")
        self.quant_status.setWordWrap(True)
        self.quant_model = QuantsModel(self)
        self.quant_table = table("quant_table", self.quant_model, self)
        self.quant_table.setAccessibleName("Files of the picked model")
        header = self.quant_table.horizontalHeader()
        header.setStretchLastSection(False)  # the file name takes the room, not the button
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

        best = QHBoxLayout()
        best.addWidget(self.best_button)
        best.addWidget(self.best_fit, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addLayout(best)
        layout.addWidget(self.quant_status)
        layout.addWidget(self.quant_table, 1)
        self.show_card(None)

    @property
    def card(self) -> ModelCard | None:
        return self._card

    def show_card(self, card: ModelCard | None, status: str | None = None) -> None:
        """``card`` with the variants it knows; ``status`` says where they came from."""
        self._card = card
        self.title.setVisible(card is not None)
        self.text.setVisible(card is not None)
        if card is None:
            self._show_best(None)
            self.quant_model.set_rows([])
            self.quant_status.setText(status or PROMPT)
            return
        title = html.escape(card.title)
        self.title.setText(f"<b>{title}</b>" if card.title == card.repo else
                           f"<b>{title}</b> · {html.escape(card.repo)}")
        self.text.setText(" · ".join(card.facts) + "\n" + card.description)
        self._show_best(card.best)
        self.quant_model.set_rows(list(card.quants))
        # Catalog estimates have no file names yet: the column would only say so four times.
        self.quant_table.setColumnHidden(0, all(c.estimated for c in card.quants))
        self._add_download_buttons()
        self.quant_status.setText(status or "")

    def _show_best(self, best: QuantChoice | None) -> None:
        self.best_button.setVisible(best is not None)
        self.best_fit.setVisible(best is not None)
        if best is None:
            return
        approx = "about " if best.estimated else ""
        self.best_button.setText(f"Download {best.option.quant} "
                                 f"({approx}{human_size(best.option.total_size)})")
        self.best_button.setAccessibleName(
            f"Download {best.option.quant}, the best fit for this computer: {best.fit.label}")
        self.best_button.setToolTip(best.fit.reason)
        self.best_fit.setText(f"{fit_html(best.fit)} — best for this computer")
        self.best_fit.setToolTip(best.fit.reason)

    def _download_best(self) -> None:
        if self._card is not None and self._card.best is not None:
            self.download_requested.emit(self._card.best)

    def _add_download_buttons(self) -> None:
        for i, choice in enumerate(self.quant_model.rows()):
            download = QPushButton("Download", self.quant_table)
            download.setObjectName(f"download_{choice.option.quant}")
            size = ("about " if choice.estimated else "") + human_size(choice.option.total_size)
            download.setToolTip(f"Download {choice.option.quant} ({size})")
            download.setAccessibleName(f"Download {choice.option.quant}, {size}, "
                                       f"{choice.fit.label}")
            download.clicked.connect(lambda _=False, c=choice: self.download_requested.emit(c))
            self.quant_table.setIndexWidget(
                self.quant_model.index(i, QuantsModel.BUTTON_COLUMN), download)

    def download_button(self, quant: str) -> QPushButton | None:
        """The Download button of ``quant``'s row (tests, keyboard users' shortcuts)."""
        for i, choice in enumerate(self.quant_model.rows()):
            if choice.option.quant == quant:
                widget = self.quant_table.indexWidget(
                    self.quant_model.index(i, QuantsModel.BUTTON_COLUMN))
                return widget if isinstance(widget, QPushButton) else None
        return None
