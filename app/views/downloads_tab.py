"""The Models page's *Downloads* tab: progress, pause, resume, cancel, retry.

One row per download, kept up to date from ``Hearth.download_events()`` (the page reads the
stream and hands each event to ``show_progress``): unfinished downloads from an earlier
session are listed when it opens, with the bytes their ``.part`` files already hold. A failed
download stays listed (its ``.part`` files stay on disk) with why it failed under the table
and a Retry button that continues it from where it stopped.

Threading contract: GUI thread; pausing, resuming and cancelling write the downloads' state
file, so they run off-thread through the page's ``Work``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget
from qasync import asyncSlot

from app.views.model_items import DownloadsModel
from app.views.widgets import button, table
from app.views.work import Work
from backend.api import TERMINAL, DownloadProgress, Hearth


class DownloadsTab(QWidget):
    progressed = Signal(object)  # DownloadProgress, after its row was updated
    completed = Signal(str)  # a download's id, when it has just finished
    active_changed = Signal(int)  # how many downloads are not finished yet

    def __init__(self, hearth: Hearth, work: Work, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._work = work
        self.download_model = DownloadsModel(self)
        self.downloads_table = table("downloads_table", self.download_model, self)
        self.downloads_table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.pause_button = button("Pause", "pause_button", self, self.pause_selected)
        self.resume_button = button("Resume", "resume_button", self, self.resume_selected)
        self.retry_button = button("Retry", "retry_button", self, self.retry_selected)
        self.retry_button.setToolTip("Try a failed download again, from where it stopped")
        self.cancel_button = button("Cancel", "cancel_button", self, self.cancel_selected)
        self.downloads_table.setAccessibleName("Downloads")
        self.detail = QLabel(self)
        self.detail.setObjectName("download_detail")
        self.detail.setWordWrap(True)
        buttons = QHBoxLayout()
        for each in (self.pause_button, self.resume_button, self.retry_button,
                     self.cancel_button):
            buttons.addWidget(each)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.downloads_table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        self._update_buttons()

    def show_progress(self, event: DownloadProgress) -> None:
        """A download's latest state (from the stream, or listed when the page opened)."""
        before = self.download_model.find(event.id)
        self.download_model.upsert(event)
        self._changed()
        if event.state == "completed" and (before is None or before.state != "completed"):
            self.completed.emit(event.id)
        if event.state == "failed" and event.error is not None and (
                before is None or before.state != "failed"):
            self.select_download(event.id)  # its row says why, next to Retry
            if not self.isVisible():  # on screen, the row says it: no banner on top
                self._work.report(event.error.user_message)
        self.progressed.emit(event)

    def show_listed(self, listed: list[DownloadProgress]) -> None:
        """The downloads there were when the page opened (finished or failed ones are old
        news: not reported again). An event already shown is newer: it stays."""
        for event in listed:
            if self.download_model.find(event.id) is None:
                self.download_model.upsert(event)
        self._changed()

    def show_started(self, download_id: str) -> None:
        """A download just added: its row at once (its first event may still be on its way)."""
        if self.download_model.find(download_id) is None:
            self.download_model.upsert(self._hearth.library.downloads.progress(download_id))
            self._changed()

    def _changed(self) -> None:
        self.active_changed.emit(sum(1 for d in self.download_model.rows()
                                     if d.state not in TERMINAL))
        self._update_buttons()

    def selected(self) -> DownloadProgress | None:
        rows = self.downloads_table.selectionModel().selectedRows()
        return self.download_model.row_at(rows[0].row()) if rows else None

    def _update_buttons(self) -> None:
        row = self.selected()
        state = row.state if row else None
        self.pause_button.setEnabled(state in ("queued", "downloading", "retrying"))
        self.resume_button.setEnabled(state == "paused")
        self.retry_button.setEnabled(state == "failed")
        # A failed one stays listed (across restarts too) until retried or cancelled.
        self.cancel_button.setEnabled(state == "failed" or (state is not None
                                                         and state not in TERMINAL))
        if row is not None and row.state == "failed" and row.error is not None:
            self.detail.setText(f"{row.repo} {row.quant} failed: {row.error.user_message}")
        else:
            self.detail.setText("")

    def select_download(self, download_id: str) -> None:
        for i, row in enumerate(self.download_model.rows()):
            if row.id == download_id:
                self.downloads_table.selectRow(i)
        self._update_buttons()

    async def _control(self, action: Callable[[str], None]) -> None:
        row = self.selected()
        if row is None:
            return
        with self._work.running():
            await self._work.off_thread(action, row.id)  # writes the state file

    @asyncSlot()
    async def pause_selected(self) -> None:
        await self._control(self._hearth.library.pause)

    @asyncSlot()
    async def resume_selected(self) -> None:
        await self._control(self._hearth.library.resume)

    @asyncSlot()
    async def retry_selected(self) -> None:
        await self._control(self._hearth.library.resume)  # continues from the .part files

    @asyncSlot()
    async def cancel_selected(self) -> None:
        await self._control(self._hearth.library.cancel)
