"""The Models page's *Discover* tab: Hearth's catalog and Hugging Face Hub search.

Pick a repository to see its GGUF files (quants), each with a fit badge for this computer and
a Download button. Searches and file listings run off the GUI thread; an answer for a repo
the person has already moved away from is dropped.

Threading contract: GUI thread; library calls run off-thread through the page's ``Work``.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.model_items import QuantsModel, RepoListModel, RepoRow
from app.views.widgets import button, table
from app.views.work import Work
from backend.api import Hearth, QuantChoice, human_size
from backend.errors import BackendError


class DiscoverTab(QWidget):
    download_started = Signal(str)  # a download's id, as soon as it was added

    def __init__(self, hearth: Hearth, work: Work, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._work = work
        self._quants_for: str | None = None  # the repo whose quants the table shows or awaits
        self.repo_model = RepoListModel(self)
        self.quant_model = QuantsModel(self)
        self.search_box = QLineEdit(self)
        self.search_box.setObjectName("search_box")
        self.search_box.setPlaceholderText("Search GGUF models on the Hugging Face Hub")
        self.search_box.returnPressed.connect(self.search)
        self.search_button = button("Search", "search_button", self, self.search)
        self.catalog_button = button("Catalog", "catalog_button", self, self.show_catalog)
        self.catalog_button.setToolTip("Hearth's list of well-known models (works offline)")
        self.repo_list = QListView(self)
        self.repo_list.setObjectName("repo_list")
        self.repo_list.setModel(self.repo_model)
        self.repo_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.repo_list.selectionModel().currentChanged.connect(self._repo_selected)
        self.repo_status = QLabel(self)
        self.repo_status.setObjectName("repo_status")
        self.repo_status.setWordWrap(True)
        self.quant_table = table("quant_table", self.quant_model, self)
        header = self.quant_table.horizontalHeader()
        header.setStretchLastSection(False)  # the file name takes the room, not the button
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.quant_status = QLabel("Pick a model to see its files and how each fits this "
                                   "computer.", self)
        self.quant_status.setObjectName("quant_status")
        self.quant_status.setWordWrap(True)
        self._lay_out()

    def _lay_out(self) -> None:
        search = QHBoxLayout()
        search.addWidget(self.search_box, 1)
        search.addWidget(self.search_button)
        search.addWidget(self.catalog_button)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.repo_list, 1)
        left_layout.addWidget(self.repo_status)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.quant_status)
        right_layout.addWidget(self.quant_table, 1)
        split = QSplitter(self)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        split.setSizes([360, 640])
        layout = QVBoxLayout(self)
        layout.addLayout(search)
        layout.addWidget(split, 1)

    @Slot()
    def show_catalog(self) -> None:
        """The catalog (read once, off the GUI thread, when the page started)."""
        self.repo_model.set_rows([RepoRow.from_catalog(e)
                                  for e in self._hearth.library.catalog()])
        self.repo_status.setText("Hearth's catalog of well-known models. Search to find more "
                                 "on the Hugging Face Hub.")

    @asyncSlot()
    async def search(self) -> None:
        query = self.search_box.text().strip()
        if not query:
            self.show_catalog()
            return
        with self._work.running():
            self.search_button.setEnabled(False)
            self.repo_status.setText(f"Searching the Hub for “{query}”…")
            try:
                found = await self._work.off_thread(self._hearth.library.search, query)
            except BackendError as exc:
                self.repo_status.setText(exc.user_message)
                raise
            finally:
                self.search_button.setEnabled(True)
            self.repo_model.set_rows([RepoRow.from_hub(s) for s in found])
            noun = "repository matches" if len(found) == 1 else "repositories match"
            self.repo_status.setText(f"{len(found)} GGUF {noun} “{query}”." if found
                                     else f"No GGUF repositories match “{query}”.")

    def _repo_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = self.repo_model.row_at(current.row())
        if row is not None:
            self.show_quants(row.repo)

    @asyncSlot(str)
    async def show_quants(self, repo_id: str) -> None:
        """List ``repo_id``'s files with fit badges; a late answer for another repo is dropped."""
        self._quants_for = repo_id
        self.quant_model.set_rows([])
        self.quant_status.setText(f"Reading {repo_id}'s files and checking how each fits this "
                                  "computer…")
        with self._work.running():
            try:
                choices = await self._work.off_thread(self._hearth.library.quants, repo_id)
            except BackendError as exc:
                if self._quants_for == repo_id:
                    self.quant_status.setText(exc.user_message)
                raise
            if self._quants_for != repo_id:
                return  # the person moved on to another repo meanwhile
            self.quant_model.set_rows(choices)
            self._add_download_buttons()
            self.quant_status.setText(
                f"{repo_id}: {len(choices)} file{'s' if len(choices) != 1 else ''}. Hover a "
                "fit for the reason." if choices else
                f"{repo_id} has no GGUF model files to download.")

    def _add_download_buttons(self) -> None:
        for i, choice in enumerate(self.quant_model.rows()):
            download = QPushButton("Download", self.quant_table)
            download.setObjectName(f"download_{choice.option.quant}")
            download.setToolTip(f"Download {choice.option.quant} "
                                f"({human_size(choice.option.total_size)})")
            download.clicked.connect(lambda _=False, c=choice: self.download(c))
            self.quant_table.setIndexWidget(
                self.quant_model.index(i, QuantsModel.BUTTON_COLUMN), download)

    def download_button(self, quant: str) -> QPushButton | None:
        """The Download button of ``quant``'s row (for tests and keyboard users' shortcuts)."""
        for i, choice in enumerate(self.quant_model.rows()):
            if choice.option.quant == quant:
                widget = self.quant_table.indexWidget(
                    self.quant_model.index(i, QuantsModel.BUTTON_COLUMN))
                return widget if isinstance(widget, QPushButton) else None
        return None

    @asyncSlot(object)
    async def download(self, choice: QuantChoice) -> None:
        with self._work.running():
            download_id = await self._work.off_thread(self._hearth.library.download,
                                                      choice.repo, choice.option)
            self.download_started.emit(download_id)
