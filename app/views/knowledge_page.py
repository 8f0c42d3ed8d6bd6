"""The Documents page: the knowledge library's collections, their folders and indexing.

"Add folder…" makes a collection of a folder (named after it) and indexing starts in the
background (``Hearth.knowledge``'s own thread). Each collection is a ``CollectionRow``: its
name and folders, a progress bar fed by the library's ``IndexProgress`` events (files read,
then passages given vectors), what it is doing now, and Pause/Resume (saved: a paused
collection stays paused after a restart), Rescan and Remove. Files that couldn't be read are
listed under the rows, each with its sentence (encrypted, too large, binary…). Which
collections a chat uses is picked in the chat itself (the composer's "Collections" menu).

The page opens the library at start only when it was used before (so unfinished indexing
resumes after a restart), and otherwise on its first visit.

Threading contract: GUI thread only; library calls are awaited off the GUI thread and its
events arrive through one ``StreamReader`` task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.streams import StreamReader
from app.views.attachments import open_knowledge
from app.views.work import Work
from backend.api import CollectionInfo, FileFailed, Hearth, IndexProgress, KnowledgeEvent

if TYPE_CHECKING:
    from backend.api import Knowledge

T = TypeVar("T")


class CollectionRow(QFrame):
    """One collection: what it holds, how far indexing got, and its buttons."""

    pause_toggled = Signal(str, bool)  # name, paused
    rescan_requested = Signal(str)
    remove_requested = Signal(str)

    def __init__(self, info: CollectionInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("collection_row")
        self.name = info.name
        self.title = QLabel(self)
        self.title.setObjectName("collection_title")
        self.folders = QLabel(self)
        self.folders.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setAccessibleName(f"Indexing {info.name}")
        self.progress.setMaximumHeight(10)
        self.progress.setTextVisible(False)
        self.state = QLabel(self)
        self.state.setObjectName("collection_state")
        self.state.setWordWrap(True)
        self.pause_button = QPushButton(self)
        self.pause_button.clicked.connect(
            lambda: self.pause_toggled.emit(self.name, self.pause_button.text() == "Pause"))
        rescan = QPushButton("Rescan", self)
        rescan.setToolTip("Look for new, changed and deleted files now")
        rescan.clicked.connect(lambda: self.rescan_requested.emit(self.name))
        remove = QPushButton("Remove", self)
        remove.setToolTip("Forget this collection (your files stay where they are)")
        remove.clicked.connect(lambda: self.remove_requested.emit(self.name))
        buttons = QHBoxLayout()
        buttons.addWidget(self.pause_button)
        buttons.addWidget(rescan)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        column = QVBoxLayout(self)
        column.addWidget(self.title)
        column.addWidget(self.folders)
        column.addWidget(self.progress)
        column.addWidget(self.state)
        column.addLayout(buttons)
        self.show_info(info)

    def show_info(self, info: CollectionInfo) -> None:
        self.title.setText(f"<b>{info.name}</b>")
        self.folders.setText(", ".join(info.folders))
        self.pause_button.setText("Resume" if info.paused else "Pause")
        done = info.indexed + info.failed
        self.progress.setRange(0, max(info.files, 1))
        self.progress.setValue(done)
        words = [f"{info.indexed:,} of {info.files:,} files indexed"]
        if info.failed:
            words.append(f"{info.failed} couldn't be read")
        if info.chunks and info.embedded:
            words.append(f"{info.embedded:,} of {info.chunks:,} passages searchable by "
                         "meaning")
        elif info.chunks:
            words.append("searched by words only until an embedding model is downloaded")
        if info.paused:
            words.append("paused")
        self.state.setText(" · ".join(words))

    def show_progress(self, event: IndexProgress) -> None:
        if event.state == "embedding" and event.chunks_total:
            self.progress.setRange(0, event.chunks_total)
            self.progress.setValue(event.chunks_embedded)
        elif event.files_total:
            self.progress.setRange(0, event.files_total)
            self.progress.setValue(event.files_done)
        doing = {"scanning": "Looking for files…", "paused": "Paused",
                 "idle": "Up to date"}.get(event.state)
        if doing is None:
            doing = (f"Reading {Path(event.current).name} ({event.files_done:,} of "
                     f"{event.files_total:,})" if event.state == "indexing" and event.current
                     else f"Making passages searchable by meaning ({event.chunks_embedded:,}"
                     f" of {event.chunks_total:,})")
        if event.state == "paused":  # other states may still come from a pass paused midway
            self.pause_button.setText("Resume")
        self.state.setText(doing + (f" · {event.note}" if event.note else ""))


class KnowledgePage(QWidget):
    problem = Signal(str)
    collections_changed = Signal()  # rows redrawn (tests wait on it)

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self.work = Work(self.problem.emit)
        self._reader = StreamReader(self)
        self._knowledge: Knowledge | None = None
        self.rows: dict[str, CollectionRow] = {}
        heading = QLabel("<h2>Documents</h2>Folders you add are indexed in the background, "
                         "so a chat can answer from them: pick them in a chat's "
                         "<i>Collections</i> menu.", self)
        heading.setWordWrap(True)
        self.add_button = QPushButton("Add folder…", self)
        self.add_button.setObjectName("add_folder_button")
        self.add_button.clicked.connect(self.choose_folder)
        top = QHBoxLayout()
        top.addWidget(heading, 1)
        top.addWidget(self.add_button)
        self._rows = QVBoxLayout()
        self.empty = QLabel("No folders yet.", self)
        self._rows.addWidget(self.empty)
        self.failures = QListWidget(self)
        self.failures.setObjectName("failed_files")
        self.failures.setAccessibleName("Files that couldn't be read")
        self.failures.hide()
        column = QVBoxLayout(self)
        column.setContentsMargins(24, 16, 24, 16)
        column.addLayout(top)
        column.addLayout(self._rows)
        self.failures_heading = QLabel("Files that couldn't be read:", self)
        self.failures_heading.hide()
        column.addWidget(self.failures_heading)
        column.addWidget(self.failures)
        column.addStretch(1)  # rows keep their height at the top, however few
        QTimer.singleShot(0, self._start_if_used)

    @property
    def busy(self) -> bool:
        return self.work.busy

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    # -- opening the library ---------------------------------------------------------------
    def _start_if_used(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no qasync loop (a test of another page): nothing to resume
            return
        self.open_library(only_if_used=True)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.open_library()

    @asyncSlot()
    async def open_library(self, only_if_used: bool = False) -> None:
        with self.work.running():
            if self._knowledge is None and only_if_used and not await self._call(
                    lambda: self._hearth.knowledge_in_use):
                return
            await self._ensure_open()
            await self.refresh()

    async def _ensure_open(self) -> Knowledge:
        if self._knowledge is None:
            knowledge = await open_knowledge(self._hearth)
            if self._knowledge is None:  # not opened by another slot meanwhile
                self._knowledge = knowledge
                self._reader.read(knowledge.events.stream, self._event)
        return self._knowledge

    async def refresh(self) -> None:
        assert self._knowledge is not None
        infos = await self._call(self._knowledge.collections)
        names = {info.name for info in infos}
        for name in [n for n in self.rows if n not in names]:
            row = self.rows.pop(name)
            self._rows.removeWidget(row)
            row.deleteLater()
        for info in infos:
            row = self.rows.get(info.name)
            if row is None:
                row = CollectionRow(info, self)
                row.pause_toggled.connect(self.set_paused)
                row.rescan_requested.connect(self.rescan)
                row.remove_requested.connect(self.remove)
                self._rows.addWidget(row)
                self.rows[info.name] = row
            else:
                row.show_info(info)
        self.empty.setVisible(not infos)
        failed = [f"{Path(f.path).name}: {f.error}" for info in infos
                  for f in await self._call(self._knowledge.files, info.name)
                  if f.state == "failed"]
        self.failures.clear()
        self.failures.addItems(failed)
        self.failures.setVisible(bool(failed))
        self.failures_heading.setVisible(bool(failed))
        self.collections_changed.emit()

    def _event(self, event: KnowledgeEvent) -> None:
        if isinstance(event, IndexProgress):
            row = self.rows.get(event.collection)
            if row is not None:
                row.show_progress(event)
            if event.state == "idle":
                self.open_library()  # the counts and the failures, as they are now
        elif isinstance(event, FileFailed) and event.collection in self.rows:
            self.failures.addItem(f"{Path(event.path).name}: {event.error}")
            self.failures.show()
            self.failures_heading.show()

    # -- intents ---------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of documents",
                                                  str(Path.home()))
        if folder:
            self.add_folder(folder)

    @asyncSlot(str)
    async def add_folder(self, folder: str) -> None:
        await self._change(lambda k: k.add_folder(folder))

    @asyncSlot(str, bool)
    async def set_paused(self, name: str, paused: bool) -> None:
        await self._change(lambda k: k.pause(name) if paused else k.resume(name))

    @asyncSlot(str)
    async def rescan(self, name: str) -> None:
        await self._change(lambda k: k.rescan(name))

    @asyncSlot(str)
    async def remove(self, name: str) -> None:
        await self._change(lambda k: k.delete_collection(name))

    async def _change(self, action: Callable[[Knowledge], object]) -> None:
        with self.work.running():
            await self._call(action, await self._ensure_open())
            await self.refresh()

    def shutdown(self) -> None:
        self._reader.close()
        self.work.shutdown()
