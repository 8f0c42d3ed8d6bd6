"""Qt item models of the Models page's tables: thin adapters over lists of backend dataclasses.

No I/O anywhere in here: rows arrive as values (sizes already read, fits already computed)
and ``data()`` only formats them. Discover's cards have their own model (``model_cards``).
GUI thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from app.views.fit_badge import fit_colour
from backend.api import DownloadProgress, LibraryModel, QuantChoice, human_size

Row = TypeVar("Row")
AnyIndex = QModelIndex | QPersistentModelIndex
Role = Qt.ItemDataRole
ROW_ROLE = Role.UserRole + 1  # the row's dataclass itself, for views and tests

_SOURCE_LABELS = {"builtin": "built in", "library": "downloaded", "hf-cache": "Hugging Face cache",
                  "folder": "folder", "file": "imported file"}
_STATE_LABELS = {"queued": "Queued", "downloading": "Downloading", "retrying": "Retrying",
                 "verifying": "Verifying", "paused": "Paused", "completed": "Done",
                 "failed": "Failed", "cancelled": "Cancelled"}


class _TableModel(QAbstractTableModel, Generic[Row]):
    """A table over ``list[Row]``; subclasses name the columns and format one cell."""

    headers: tuple[str, ...] = ()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []

    def rows(self) -> list[Row]:
        return list(self._rows)

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def row_at(self, row: int) -> Row | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Role.DisplayRole) -> Any:
        if (orientation == Qt.Orientation.Horizontal and role == Role.DisplayRole
                and 0 <= section < len(self.headers)):
            return self.headers[section]
        return None

    def data(self, index: AnyIndex, role: int = Role.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == ROW_ROLE:
            return row
        return self.cell(row, index.column(), role)

    def cell(self, row: Row, column: int, role: int) -> Any:
        raise NotImplementedError


class LocalModelsModel(_TableModel[LibraryModel]):
    """The Downloaded tab: models on this machine."""

    headers = ("Name", "Quant", "Size", "Source", "Path")

    def cell(self, row: LibraryModel, column: int, role: int) -> Any:
        model = row.model
        if role == Role.DisplayRole:
            return (model.id, model.quant or "", human_size(row.size_bytes),
                    _SOURCE_LABELS.get(model.source, model.source), str(model.path))[column]
        if role == Role.ToolTipRole:
            return model.description or str(model.path)
        if role == Role.TextAlignmentRole and column == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class QuantsModel(_TableModel[QuantChoice]):
    """The Discover tab's variants of one repo; the last column holds a Download button."""

    headers = ("File", "Quant", "Size", "Fit", "")
    FIT_COLUMN = 3
    BUTTON_COLUMN = 4

    def cell(self, row: QuantChoice, column: int, role: int) -> Any:
        if role == Role.DisplayRole:
            files = row.file_name + (f" (+{len(row.option.files) - 1} parts)"
                                     if row.option.is_split else "")
            if row.estimated:  # from the catalog: the Hub names the file when it downloads
                files = "—"
            size = ("about " if row.estimated else "") + human_size(row.option.total_size)
            return (files, row.option.quant, size, row.fit.label, "")[column]
        if role == Role.AccessibleTextRole and column == self.FIT_COLUMN:
            return f"{row.fit.label}: {row.fit.reason}"
        if column == self.FIT_COLUMN:
            if role == Role.ForegroundRole:
                return fit_colour(row.fit)
            if role == Role.ToolTipRole:
                return row.fit.reason
        if role == Role.TextAlignmentRole and column == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class DownloadsModel(_TableModel[DownloadProgress]):
    """The Downloads tab: one row per download, updated in place as progress arrives."""

    headers = ("Model", "Progress", "Speed", "ETA", "State")

    def upsert(self, event: DownloadProgress) -> int:
        """Replace the row with ``event.id`` (or append it); returns its row number."""
        for i, row in enumerate(self._rows):
            if row.id == event.id:
                self._rows[i] = event
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.headers) - 1))
                return i
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(event)
        self.endInsertRows()
        return len(self._rows) - 1

    def find(self, download_id: str) -> DownloadProgress | None:
        return next((r for r in self._rows if r.id == download_id), None)

    def cell(self, row: DownloadProgress, column: int, role: int) -> Any:
        if role == Role.DisplayRole:
            pct = 100 * row.bytes_done / row.bytes_total if row.bytes_total else 0.0
            active = row.state == "downloading"
            state = _STATE_LABELS.get(row.state, row.state)
            if row.state == "retrying" and row.retries:
                state = f"Retrying ({row.retries})"
            return (f"{row.repo}:{row.quant}",
                    f"{pct:.0f}% · {human_size(row.bytes_done)} of {human_size(row.bytes_total)}",
                    f"{human_size(row.rate_bps)}/s" if active else "—",
                    _duration(row.eta_s) if active else "—",
                    state)[column]
        if role == Role.ToolTipRole:
            if row.error is not None:
                return row.error.user_message
            return str(row.path) if row.path else ", ".join(row.files)
        return None
