"""The Models page: models on this machine, discovering and downloading new ones.

Three tabs over ``hearth.library`` (a ``LibraryService``): *Downloaded* (use, delete, show,
import by dialog or drag and drop, with a welcome panel until a model was picked), *Discover*
(the catalog and Hub search as cards, each with the variant that fits this machine best; the
catalog's fits are estimated offline) and *Downloads* (progress, pause, resume, cancel, retry;
unfinished ones come back after a restart). The page lays them out, takes dropped files, and
reads ``Hearth.download_events()``.

Threading contract: the page lives on the GUI thread. Every library call that touches disk,
network or the hardware probe runs through ``asyncio.to_thread`` inside a qasync slot that
marks the page busy, awaits, renders, and restores in ``finally`` (``Work``). Download progress
arrives as a stream read on the GUI's loop. A ``BackendError`` becomes one ``problem`` signal
with its sentence (the window's banner), except the Discover tab's Hub problems, which it
shows in its own notice line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget
from qasync import asyncSlot

from app.streams import StreamReader
from app.views.discover_tab import DiscoverTab, download_problem
from app.views.downloaded_tab import DownloadedTab
from app.views.downloads_tab import DownloadsTab
from app.views.work import Work
from backend.api import BestPick, CatalogCard, DownloadProgress, Hearth
from backend.errors import BackendError

DOWNLOADED, DISCOVER, DOWNLOADS = range(3)


def gguf_paths(urls: Iterable[QUrl]) -> list[Path]:
    """The local ``.gguf`` files among dropped URLs (anything else is not ours to take)."""
    return [Path(u.toLocalFile()) for u in urls
            if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]


def _open(hearth: Hearth) -> tuple[list[DownloadProgress], list[CatalogCard]]:
    """On a worker thread: the first use of downloads reads their state file and resumes
    them; the catalog's cards read a file and probe the hardware for their fit badges."""
    return hearth.library.downloads.downloads(), hearth.library.catalog_cards()


class ModelsPage(QWidget):
    model_chosen = Signal(str)  # a model id to load in the chat
    problem = Signal(str)  # a BackendError's sentence, for the main window's banner
    download_progressed = Signal(object)  # DownloadProgress, after the row was updated

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("models_page")
        self._hearth = hearth
        self.last_problem: str | None = None
        # Busy until start() has filled the tabs (it runs on the loop's next turn).
        self.work = Work(self._report, busy=1)
        self.downloaded = DownloadedTab(hearth, self.work, self)
        self.discover = DiscoverTab(hearth, self.work, self)
        self.downloads = DownloadsTab(hearth, self.work, self)
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("models_tabs")
        self.tabs.addTab(self.downloaded, "Downloaded")
        self.tabs.addTab(self.discover, "Discover")
        self.tabs.addTab(self.downloads, "Downloads")
        self.tabs.currentChanged.connect(self._tab_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

        self.downloaded.model_chosen.connect(self.model_chosen)
        self.downloaded.welcome.download_requested.connect(self.download_best_pick)
        self.downloaded.imported.connect(lambda _id: self.tabs.setCurrentIndex(DOWNLOADED))
        self.discover.download_started.connect(self.downloads.show_started)
        self.downloads.progressed.connect(self.download_progressed)
        self.downloads.completed.connect(lambda _id: self.downloaded.refresh())
        self.downloads.active_changed.connect(
            lambda active: self.tabs.setTabText(
                DOWNLOADS, f"Downloads ({active})" if active else "Downloads"))
        self._streams = StreamReader(self)
        self.setAcceptDrops(True)
        # On Qt's next turn, not now: the page may be built before the qasync loop runs.
        QTimer.singleShot(0, self.start)

    @property
    def busy(self) -> bool:
        """A library call is in flight (tests wait on this)."""
        return self.work.busy

    def _report(self, message: str) -> None:
        self.last_problem = message
        self.problem.emit(message)

    @asyncSlot()
    async def start(self) -> None:
        """Fill every tab: downloads first (the manager continues unfinished ones), then the
        catalog, the local list and, for the welcome panel, the best pick."""
        try:
            with self.work.running():
                listed, cards = await self.work.off_thread(_open, self._hearth)
                self.downloads.show_listed(listed)
                # The stream lists them again, then reports every change: nothing is missed
                # between this listing and its start.
                self._streams.read(self._hearth.download_events, self.downloads.show_progress)
                self.discover.set_catalog(cards)
            await self.downloaded.reload()
        finally:
            self.work.release()

    def shutdown(self) -> None:
        """Stop following downloads and cancel the page's calls in flight (window close)."""
        self._streams.close()
        self.work.shutdown()

    @asyncSlot(object)
    async def download_best_pick(self, pick: BestPick) -> None:
        best = self.downloaded.welcome.best_pick_button
        with self.work.running():
            best.setEnabled(False)
            try:
                download_id = await self.work.off_thread(
                    self._hearth.library.download_quant, pick.entry.repo, pick.quant)
            except BackendError as exc:  # which download, and what to do meanwhile
                self._report(download_problem(pick.entry.alias, exc))
                return
            finally:
                best.setEnabled(True)
            self.downloads.show_started(download_id)
            self.tabs.setCurrentIndex(DOWNLOADS)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # The chat may have loaded the starter since the tab was filled: that saved it as the
        # default model, and the welcome's "Start with SmolLM2" would offer what is in use.
        if self.tabs.currentIndex() == DOWNLOADED and not self.busy:
            self.downloaded.refresh()

    def _tab_changed(self, index: int) -> None:
        if index == DOWNLOADED and not self.busy:
            self.downloaded.refresh()  # files may have changed behind our back

    # -- dropping .gguf files --------------------------------------------------------------
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
        self.downloaded.import_paths(paths)
