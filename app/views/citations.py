"""A reply's sources: the numbered list under a reply that used documents, and the passage
a click opens.

A reply grounded in documents stores its citations in its ``stats["citations"]`` (see
``Grounding.stats``), so a reply just finished and the same reply reopened from the history
show the same list, and the exports keep it. Each entry reads "[1] manual.pdf, page 3" and
is a link: clicking it opens a ``PassageDialog`` with the passage itself (looked up by its
chunk id off the GUI thread) and a button that opens the file in the system's viewer. A whole
document given to the model has no chunk id: its dialog shows the document's text.

Threading contract: GUI thread only; the passage lookup is one awaited off-thread call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.transcript import MessageView, TranscriptView
from backend.api import Citation, Hearth, StoredMessage
from backend.errors import BackendError

_MODE_WORDS = {"whole": "Sources (whole documents)", "retrieved": "Sources (best passages)"}


def citations_of(stats: dict[str, Any] | None) -> list[Citation]:
    """The citations stored with a reply; a damaged entry is skipped, not fatal."""
    found = []
    for item in (stats or {}).get("citations") or []:
        try:
            found.append(Citation.from_json(item))
        except (KeyError, TypeError, ValueError):
            continue
    return found


class CitationList(QWidget):
    """The sources under one reply, each a link that asks for its passage."""

    open_requested = Signal(object)  # Citation

    def __init__(self, citations: list[Citation], mode: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("citations")
        self.citations = citations
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 4, 0, 0)
        column.setSpacing(2)
        heading = QLabel(_MODE_WORDS.get(mode or "", "Sources"), self)
        heading.setObjectName("citations_heading")
        column.addWidget(heading)
        self.links: list[QLabel] = []
        for number, citation in enumerate(citations):
            link = QLabel(f'<a href="{number}">[{citation.number}] {_escape(citation.label)}'
                          "</a>", self)
            link.setTextFormat(Qt.TextFormat.RichText)
            link.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                         | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
            link.setToolTip(citation.excerpt or citation.path)
            link.setAccessibleName(f"Source {citation.number}: {citation.label}")
            link.linkActivated.connect(lambda href: self.open_requested.emit(
                self.citations[int(href)]))
            column.addWidget(link)
            self.links.append(link)

    def activate(self, index: int) -> None:
        """What a click on the ``index``-th link does (tests and keyboard users)."""
        self.open_requested.emit(self.citations[index])


class PassageDialog(QDialog):
    """One source: where it is, the passage's text, and a way to open the file."""

    def __init__(self, citation: Citation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.citation = citation
        self.setObjectName("passage_dialog")
        self.setWindowTitle(f"[{citation.number}] {citation.label}")
        self.resize(620, 420)
        where = QLabel(f"<b>{_escape(citation.title or Path(citation.path).name)}</b><br>"
                       f"{_escape(citation.path)}", self)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        where.setWordWrap(True)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("passage_text")
        self.text.setReadOnly(True)
        self.text.setPlainText(citation.excerpt)  # until the passage itself arrives
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.open_file_button = QPushButton("Open file", self)
        self.open_file_button.setEnabled(Path(citation.path).is_file())
        self.open_file_button.clicked.connect(self.open_file)
        buttons.addButton(self.open_file_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addWidget(where)
        column.addWidget(self.text, 1)
        column.addWidget(buttons)

    def show_passage(self, text: str) -> None:
        self.text.setPlainText(text)

    def open_file(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.citation.path))


class CitationOpener(QObject):
    """Adds the sources under replies and opens the passage a click asks for."""

    problem = Signal(str)
    opened = Signal(object)  # PassageDialog, once its passage is shown

    def __init__(self, hearth: Hearth, parent: QWidget) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._parent = parent
        self.dialog: PassageDialog | None = None

    def show(self, view: MessageView, stats: dict[str, Any] | None) -> CitationList | None:
        """Put ``stats``' citations under ``view`` (above its footer); None when it has none
        or shows them already."""
        citations = citations_of(stats)
        if not citations or view.findChild(CitationList) is not None:
            return None
        sources = CitationList(citations, (stats or {}).get("sources_mode"), view)
        sources.open_requested.connect(self.open)
        layout = view.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(view.footer), sources)
        return sources

    def shown(self, show_stored: Callable[[TranscriptView, StoredMessage], MessageView],
              transcript: TranscriptView, message: StoredMessage) -> MessageView:
        """A stored turn shown by ``show_stored``, with its sources under it."""
        view = show_stored(transcript, message)
        self.show(view, message.stats)
        return view

    @asyncSlot(object)
    async def open(self, citation: Citation) -> None:
        dialog = PassageDialog(citation, self._parent)
        self.dialog = dialog
        dialog.open()  # not exec(): a nested modal loop would stall asyncio
        try:
            passage = await asyncio.to_thread(self._passage, citation)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            return
        if passage is None:
            dialog.show_passage(f"{citation.excerpt}\n\n(This passage is no longer in the "
                                "index: its file was changed or removed. Open the file to "
                                "read it now.)")
        else:
            dialog.show_passage(passage)
        self.opened.emit(dialog)

    def _passage(self, citation: Citation) -> str | None:
        """The passage, or the whole document when that is what the model was given."""
        knowledge = self._hearth.knowledge
        if citation.chunk_id is None:
            return knowledge.document_text(citation.path)
        found = knowledge.passage(citation.chunk_id)
        return found.text if found is not None else None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
