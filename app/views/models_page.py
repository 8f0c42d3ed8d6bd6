"""The Models page: models on this machine, discovering and downloading new ones.

Three tabs over ``Backend.library`` (a ``LibraryService``): *Downloaded* (use, delete, show,
import by dialog or drag and drop, with a welcome panel while only the starter is here),
*Discover* (the catalog and Hub search; each repo's quants with a fit badge for this machine)
and *Downloads* (progress, pause, resume, cancel; unfinished ones come back after a restart).

Threading contract: the page lives on the GUI thread. Every library call that touches disk,
network or the hardware probe runs through ``asyncio.to_thread`` inside a qasync slot that
marks the page busy, awaits, renders, and restores in ``finally``. Download progress arrives
on the manager's worker threads and reaches the widgets only through a queued Qt signal.
Every ``BackendError`` becomes one ``problem`` signal with its sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.model_items import (
    DownloadsModel,
    LocalModelsModel,
    QuantsModel,
    RepoListModel,
    RepoRow,
)
from app.views.welcome_panel import WelcomePanel
from backend.errors import BackendError
from backend.facade import Backend
from backend.library.downloads import TERMINAL, DownloadProgress
from backend.library.service import BestPick, LibraryModel, QuantChoice
from backend.library.transfer import human_size

T = TypeVar("T")
_DELETABLE = frozenset({"library", "file"})  # downloaded files; imported ones leave the list


def gguf_paths(urls: Iterable[QUrl]) -> list[Path]:
    """The local ``.gguf`` files among dropped URLs (anything else is not ours to take)."""
    return [Path(u.toLocalFile()) for u in urls
            if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]


class ModelsPage(QWidget):
    model_chosen = Signal(str)  # a model id to load in the chat
    problem = Signal(str)  # a BackendError's sentence, for the main window's banner
    download_progressed = Signal(object)  # DownloadProgress, after the row was updated
    # Emitted on download worker threads; connected queued so the slot runs on the GUI thread.
    _progress_arrived = Signal(object)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("models_page")
        self._library = backend.library
        self._busy = 1  # until start() has filled the tabs (it runs on the loop's next turn)
        self._tasks: set[asyncio.Task[object]] = set()
        self._quants_for: str | None = None  # the repo whose quants the table shows or awaits
        self._unsubscribe: Callable[[], None] | None = None
        self.last_problem: str | None = None
        self.local_model = LocalModelsModel(self)
        self.repo_model = RepoListModel(self)
        self.quant_model = QuantsModel(self)
        self.download_model = DownloadsModel(self)
        self._progress_arrived.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self.setAcceptDrops(True)
        self._build()
        # On Qt's next turn, not now: the page may be built before the qasync loop runs.
        QTimer.singleShot(0, self.start)

    @property
    def busy(self) -> bool:
        """A library call is in flight (tests wait on this)."""
        return self._busy > 0

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("models_tabs")
        self.tabs.addTab(self._build_downloaded(), "Downloaded")
        self.tabs.addTab(self._build_discover(), "Discover")
        self.tabs.addTab(self._build_downloads(), "Downloads")
        self.tabs.currentChanged.connect(self._tab_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    @staticmethod
    def _table(name: str, model: object, parent: QWidget) -> QTableView:
        view = QTableView(parent)
        view.setObjectName(name)
        view.setModel(model)  # type: ignore[arg-type]
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        view.verticalHeader().hide()
        view.horizontalHeader().setStretchLastSection(True)
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        return view

    def _button(self, text: str, name: str, parent: QWidget, slot: Callable[[], object]
                ) -> QPushButton:
        button = QPushButton(text, parent)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    def _build_downloaded(self) -> QWidget:
        tab = QWidget(self)
        self.welcome = WelcomePanel(tab)
        self.welcome.hide()
        self.welcome.model_chosen.connect(self.model_chosen)
        self.welcome.download_requested.connect(self.download_best_pick)
        self.local_table = self._table("local_table", self.local_model, tab)
        self.local_table.doubleClicked.connect(lambda _index: self.use_selected())
        self.local_table.selectionModel().selectionChanged.connect(self._update_local_buttons)
        self.local_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.local_table.customContextMenuRequested.connect(self._local_menu)
        self.use_button = self._button("Use in chat", "use_button", tab, self.use_selected)
        self.delete_button = self._button("Delete…", "delete_button", tab, self.delete_selected)
        self.show_button = self._button("Show in file manager", "show_button", tab,
                                        self.show_selected)
        self.import_button = self._button("Import .gguf…", "import_button", tab,
                                          self.import_dialog)
        self.import_button.setToolTip("Add GGUF files from this computer (used where they are, "
                                      "not copied). You can also drop them onto this page.")
        buttons = QHBoxLayout()
        for button in (self.use_button, self.delete_button, self.show_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.welcome)
        layout.addWidget(self.local_table, 1)
        layout.addLayout(buttons)
        self._update_local_buttons()
        return tab

    def _build_discover(self) -> QWidget:
        tab = QWidget(self)
        self.search_box = QLineEdit(tab)
        self.search_box.setObjectName("search_box")
        self.search_box.setPlaceholderText("Search GGUF models on the Hugging Face Hub")
        self.search_box.returnPressed.connect(self.search)
        self.search_button = self._button("Search", "search_button", tab, self.search)
        self.catalog_button = self._button("Catalog", "catalog_button", tab, self.show_catalog)
        self.catalog_button.setToolTip("Hearth's list of well-known models (works offline)")
        self.repo_list = QListView(tab)
        self.repo_list.setObjectName("repo_list")
        self.repo_list.setModel(self.repo_model)
        self.repo_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.repo_list.selectionModel().currentChanged.connect(self._repo_selected)
        self.repo_status = QLabel(tab)
        self.repo_status.setObjectName("repo_status")
        self.repo_status.setWordWrap(True)
        self.quant_table = self._table("quant_table", self.quant_model, tab)
        header = self.quant_table.horizontalHeader()
        header.setStretchLastSection(False)  # the file name takes the room, not the button
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.quant_status = QLabel("Pick a model to see its files and how each fits this "
                                   "computer.", tab)
        self.quant_status.setObjectName("quant_status")
        self.quant_status.setWordWrap(True)
        search = QHBoxLayout()
        search.addWidget(self.search_box, 1)
        search.addWidget(self.search_button)
        search.addWidget(self.catalog_button)
        left = QWidget(tab)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.repo_list, 1)
        left_layout.addWidget(self.repo_status)
        right = QWidget(tab)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.quant_status)
        right_layout.addWidget(self.quant_table, 1)
        split = QSplitter(tab)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        split.setSizes([360, 640])
        layout = QVBoxLayout(tab)
        layout.addLayout(search)
        layout.addWidget(split, 1)
        return tab

    def _build_downloads(self) -> QWidget:
        tab = QWidget(self)
        self.downloads_table = self._table("downloads_table", self.download_model, tab)
        self.downloads_table.selectionModel().selectionChanged.connect(
            self._update_download_buttons)
        self.pause_button = self._button("Pause", "pause_button", tab, self.pause_selected)
        self.resume_button = self._button("Resume", "resume_button", tab, self.resume_selected)
        self.cancel_button = self._button("Cancel", "cancel_button", tab, self.cancel_selected)
        buttons = QHBoxLayout()
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.downloads_table, 1)
        layout.addLayout(buttons)
        self._update_download_buttons()
        return tab

    # -- plumbing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        """Wraps one slot's body: counts it as busy, tracks its task for ``shutdown`` and turns
        a ``BackendError`` into the ``problem`` signal."""
        task = asyncio.current_task()
        self._busy += 1
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        try:
            yield
        except BackendError as exc:
            self._report(exc.user_message)
        finally:
            self._busy -= 1
            self._tasks.discard(task)  # type: ignore[arg-type]

    def _report(self, message: str) -> None:
        self.last_problem = message
        self.problem.emit(message)

    @staticmethod
    async def _off_thread(fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    def shutdown(self) -> None:
        """Stop listening to downloads and cancel the page's calls in flight (window close)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in list(self._tasks):
            task.cancel()

    @asyncSlot()
    async def start(self) -> None:
        """Fill every tab: downloads first (the manager continues unfinished ones), then the
        local list, the catalog and, for the welcome panel, the best pick."""
        try:
            with self._working():
                relay = self._progress_arrived  # bound once here: emitted from worker threads
                unsubscribe, snapshot = await self._off_thread(self._attach_downloads,
                                                               relay.emit)
                self._unsubscribe = unsubscribe
                # The page may go away with no shutdown() call; stop being called back then.
                self.destroyed.connect(lambda *_: unsubscribe())
                for event in snapshot:  # events that came in meanwhile are newer: keep them
                    if self.download_model.find(event.id) is None:
                        self.download_model.upsert(event)
                self._downloads_changed()
            self.show_catalog()
            await self._refresh()
        finally:
            self._busy -= 1

    def _attach_downloads(self, callback: Callable[[DownloadProgress], None]
                          ) -> tuple[Callable[[], None], list[DownloadProgress]]:
        """On a worker thread: subscribe first, then list, so no event falls in between.
        Also reads the catalog file once, so ``show_catalog`` never touches the disk."""
        self._library.catalog()
        unsubscribe = self._library.subscribe(callback)
        return unsubscribe, self._library.downloads.downloads()

    # -- Downloaded ------------------------------------------------------------------------
    @asyncSlot()
    async def refresh(self) -> None:
        """Re-read the local models (and, while only the starter is here, the best pick)."""
        await self._refresh()

    async def _refresh(self) -> None:
        with self._working():
            selected = self._selected_local()
            models = await self._off_thread(self._library.local_models)
            self.local_model.set_rows(models)
            self._select_local(selected.id if selected else None)
            only_starter = all(m.model.source == "builtin" for m in models)
            self.welcome.setVisible(only_starter)
            if only_starter and self.welcome.best_pick is None:
                self.welcome.set_best_pick(await self._off_thread(self._library.best_pick))

    def _selected_local(self) -> LibraryModel | None:
        rows = self.local_table.selectionModel().selectedRows()
        return self.local_model.row_at(rows[0].row()) if rows else None

    def _select_local(self, model_id: str | None) -> None:
        for i, row in enumerate(self.local_model.rows()):
            if row.id == model_id:
                self.local_table.selectRow(i)
                return
        self._update_local_buttons()

    def _update_local_buttons(self) -> None:
        row = self._selected_local()
        self.use_button.setEnabled(row is not None)
        self.show_button.setEnabled(row is not None)
        self.delete_button.setEnabled(row is not None and row.model.source in _DELETABLE)
        if row is not None and row.model.source == "file":
            self.delete_button.setToolTip("Take it off the list; the file stays where it is.")
        else:
            self.delete_button.setToolTip("Delete the downloaded file from disk.")

    def _local_menu(self, pos: QPoint) -> None:
        index = self.local_table.indexAt(pos)
        if not index.isValid():
            return
        self.local_table.selectRow(index.row())
        menu = QMenu(self)
        for button in (self.use_button, self.show_button, self.delete_button):
            action = QAction(button.text(), menu)
            action.setEnabled(button.isEnabled())
            action.triggered.connect(button.click)
            menu.addAction(action)
        menu.exec(self.local_table.viewport().mapToGlobal(pos))

    @Slot()
    def use_selected(self) -> None:
        row = self._selected_local()
        if row is not None:
            self.model_chosen.emit(row.id)

    @Slot()
    def show_selected(self) -> None:
        row = self._selected_local()
        if row is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(row.model.path.parent)))

    @asyncSlot()
    async def delete_selected(self) -> None:
        row = self._selected_local()
        if row is None or row.model.source not in _DELETABLE:
            return
        if row.model.source == "file":
            text = (f"Remove {row.id} from Hearth's list?\n\nThe file stays where it is:\n"
                    f"{row.model.path}")
        else:
            text = (f"Delete {row.id}?\n\nThis frees {human_size(row.size_bytes)}; you can "
                    "download it again later.")
        answer = QMessageBox.question(self, "Delete model", text)
        if answer != QMessageBox.StandardButton.Yes:
            return
        with self._working():
            self.delete_button.setEnabled(False)
            await self._off_thread(self._library.delete, row.id)
            await self._refresh()

    @Slot()
    def import_dialog(self) -> None:
        paths, _filter = QFileDialog.getOpenFileNames(
            self, "Import GGUF models", "", "GGUF models (*.gguf);;All files (*)")
        if paths:
            self.import_paths([Path(p) for p in paths])

    @asyncSlot(list)
    async def import_paths(self, paths: list[Path]) -> None:
        """Import each file (a bad one says why and doesn't stop the others)."""
        imported: str | None = None
        with self._working():
            self.import_button.setEnabled(False)
            try:
                for path in paths:
                    try:
                        model = await self._off_thread(self._library.import_file, path)
                    except BackendError as exc:
                        self._report(exc.user_message)
                        continue
                    imported = model.id
            finally:
                self.import_button.setEnabled(True)
            await self._refresh()
            if imported is not None:
                self.tabs.setCurrentIndex(0)
                self._select_local(imported)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and gguf_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls() and gguf_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = gguf_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    # -- Discover --------------------------------------------------------------------------
    @Slot()
    def show_catalog(self) -> None:
        self.repo_model.set_rows([RepoRow.from_catalog(e) for e in self._library.catalog()])
        self.repo_status.setText("Hearth's catalog of well-known models. Search to find more "
                                 "on the Hugging Face Hub.")

    @asyncSlot()
    async def search(self) -> None:
        query = self.search_box.text().strip()
        if not query:
            self.show_catalog()
            return
        with self._working():
            self.search_button.setEnabled(False)
            self.repo_status.setText(f"Searching the Hub for “{query}”…")
            try:
                found = await self._off_thread(self._library.search, query)
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
        with self._working():
            try:
                choices = await self._off_thread(self._library.quants, repo_id)
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
            button = QPushButton("Download", self.quant_table)
            button.setObjectName(f"download_{choice.option.quant}")
            button.setToolTip(f"Download {choice.option.quant} "
                              f"({human_size(choice.option.total_size)})")
            button.clicked.connect(lambda _=False, c=choice: self.download(c))
            self.quant_table.setIndexWidget(
                self.quant_model.index(i, QuantsModel.BUTTON_COLUMN), button)

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
        with self._working():
            download_id = await self._off_thread(self._library.download, choice.repo,
                                                 choice.option)
            self._sync_download(download_id)

    @asyncSlot(object)
    async def download_best_pick(self, pick: BestPick) -> None:
        with self._working():
            self.welcome.best_pick_button.setEnabled(False)
            try:
                download_id = await self._off_thread(self._library.download_quant,
                                                     pick.entry.repo, pick.quant)
            finally:
                self.welcome.best_pick_button.setEnabled(True)
            self._sync_download(download_id)
            self.tabs.setCurrentIndex(2)

    def _sync_download(self, download_id: str) -> None:
        """Show the row at once (its first event may still be on its way)."""
        if self.download_model.find(download_id) is None:
            self.download_model.upsert(self._library.downloads.progress(download_id))
            self._downloads_changed()

    # -- Downloads -------------------------------------------------------------------------
    @Slot(object)
    def _on_progress(self, event: DownloadProgress) -> None:
        """On the GUI thread (queued from a download worker)."""
        before = self.download_model.find(event.id)
        self.download_model.upsert(event)
        self._downloads_changed()
        if event.state == "completed" and (before is None or before.state != "completed"):
            self.refresh()  # the new model appears under Downloaded
        if event.state == "failed" and event.error is not None and (
                before is None or before.state != "failed"):
            self._report(event.error.user_message)
        self.download_progressed.emit(event)

    def _downloads_changed(self) -> None:
        active = sum(1 for d in self.download_model.rows() if d.state not in TERMINAL)
        self.tabs.setTabText(2, f"Downloads ({active})" if active else "Downloads")
        self._update_download_buttons()

    def _selected_download(self) -> DownloadProgress | None:
        rows = self.downloads_table.selectionModel().selectedRows()
        return self.download_model.row_at(rows[0].row()) if rows else None

    def _update_download_buttons(self) -> None:
        row = self._selected_download()
        state = row.state if row else None
        self.pause_button.setEnabled(state in ("queued", "downloading", "retrying"))
        self.resume_button.setEnabled(state in ("paused", "failed"))
        self.cancel_button.setEnabled(state is not None and state not in TERMINAL)

    def select_download(self, download_id: str) -> None:
        for i, row in enumerate(self.download_model.rows()):
            if row.id == download_id:
                self.downloads_table.selectRow(i)
        self._update_download_buttons()

    async def _control(self, action: Callable[[str], None]) -> None:
        row = self._selected_download()
        if row is None:
            return
        with self._working():
            await self._off_thread(action, row.id)  # writes the state file: off the GUI thread

    @asyncSlot()
    async def pause_selected(self) -> None:
        await self._control(self._library.pause)

    @asyncSlot()
    async def resume_selected(self) -> None:
        await self._control(self._library.resume)

    @asyncSlot()
    async def cancel_selected(self) -> None:
        await self._control(self._library.cancel)

    def _tab_changed(self, index: int) -> None:
        if index == 0 and not self.busy:
            self.refresh()  # files may have changed behind our back
