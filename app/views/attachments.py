"""Documents in a chat: the composer's attachment row, file drops, and grounding a reply.

``AttachmentBar`` sits above the message box: "Attach files…" (a file dialog), "Collections"
(a menu of the knowledge library's collections, checked for the ones this chat uses), and a
chip per attached file ("manual.pdf · 12 pages", or why it couldn't be read, with × to
detach). ``FileDrops`` makes any widget a drop target for files (the chat page and the
message box): dropped files are attached exactly as chosen ones.

``ChatDocuments`` is the part of the chat page that talks to ``Hearth.knowledge`` for the
shown chat: attach, detach, use a collection, list what the chat has; and, for the reply
streamer, ``ground``: the messages to send with the chat's documents in them (whole when
they fit the model's context with room to answer, as ``Knowledge.ground`` decides from the
loaded or planned context; the best passages otherwise) and the citations to keep.

The knowledge library is opened only when needed: at start when it has been used before (so
indexing left unfinished resumes after a restart), else on the first attachment or visit of
the Documents page. A chat without documents is never slowed by it.

Threading contract: GUI thread only; every knowledge call is awaited off the GUI thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from PySide6.QtCore import QEvent, QObject, Signal, SignalInstance
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLayout,
    QMenu,
    QPlainTextEdit,
    QToolButton,
    QWidget,
)
from qasync import asyncSlot

from app.views.citations import CitationOpener
from backend.api import (
    IMAGE_SUFFIXES,
    SUPPORTED_SUFFIXES,
    ChatMessage,
    CollectionInfo,
    FileInfo,
    Grounding,
    Hearth,
)
from backend.errors import BackendError

if TYPE_CHECKING:  # the library loads (with numpy) only when a chat uses documents
    from backend.api import Knowledge

T = TypeVar("T")
_DIALOG_FILTER = ("Documents (" + " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES))
                  + ");;All files (*)")


_opening: weakref.WeakKeyDictionary[Hearth, asyncio.Future[Knowledge]] = \
    weakref.WeakKeyDictionary()


async def open_knowledge(hearth: Hearth) -> Knowledge:
    """``hearth.knowledge``, opened off the GUI thread once: the chat and the Documents page
    may both ask at start, and two threads opening it would make two libraries."""
    pending = _opening.get(hearth)
    if pending is None or (pending.done() and pending.exception() is not None):
        pending = asyncio.ensure_future(asyncio.to_thread(lambda: hearth.knowledge))
        _opening[hearth] = pending
    return await asyncio.shield(pending)


class ReplyHooks(Protocol):
    """What the reply streamer lets documents into: grounding and the sources shown."""

    documents: ChatDocuments | None
    citations: CitationOpener | None


class ChatPageParts(Protocol):
    """The chat page as documents see it (a protocol: the page imports this module)."""

    composer: QPlainTextEdit
    input: QWidget
    replies: ReplyHooks
    conversation_changed: SignalInstance

    def layout(self) -> QLayout | None: ...


def dropped_files(event: QDragEnterEvent | QDropEvent) -> list[str]:
    """The local files a drag carries (folders and web links are not attachments)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls()
            if url.isLocalFile() and Path(url.toLocalFile()).is_file()]


class FileDrops(QObject):
    """An event filter that turns files dropped on its widgets into ``files_dropped``, and
    image files (by their suffix: the bytes are checked when attached) into
    ``images_dropped``, which the chat attaches as images, not documents."""

    files_dropped = Signal(list)  # list[str]: paths
    images_dropped = Signal(list)  # list[str]: paths of image files

    def watch(self, widget: QWidget) -> None:
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            assert isinstance(event, QDragEnterEvent | QDropEvent)
            if dropped_files(event):
                event.acceptProposedAction()
                return True
        elif kind == QEvent.Type.Drop:
            assert isinstance(event, QDropEvent)
            files = dropped_files(event)
            if files:
                event.acceptProposedAction()
                images = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
                if images:
                    self.images_dropped.emit(images)
                if len(images) < len(files):
                    self.files_dropped.emit([f for f in files if f not in images])
                return True
        return super().eventFilter(watched, event)


class AttachmentChip(QWidget):
    """One attached file: its name and state; × detaches it."""

    remove_requested = Signal(str)  # the file's path

    def __init__(self, file: FileInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.file = file
        self.setObjectName("attachment_chip")
        if file.state == "failed":
            text, tip = f"⚠ {file.name}", file.error or "This file couldn't be read."
        elif file.state == "pending":
            text, tip = f"{file.name} · reading…", file.path
        else:
            pages = f"{file.pages} pages" if file.pages > 1 else f"{file.chars:,} characters"
            text, tip = f"{file.name} · {pages}", "\n".join(filter(None, [file.path,
                                                                          file.note]))
        self.label = QLabel(text, self)
        self.label.setToolTip(tip)
        self.label.setProperty("error", file.state == "failed")
        remove = QToolButton(self)
        remove.setText("×")
        remove.setAutoRaise(True)
        remove.setToolTip(f"Remove {file.name} from this chat")
        remove.setAccessibleName(f"Remove {file.name}")
        remove.clicked.connect(lambda: self.remove_requested.emit(file.path))
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.label)
        row.addWidget(remove)


class AttachmentBar(QWidget):
    """Attach…, Collections ▾ and the chips of the shown chat's documents."""

    files_chosen = Signal(list)  # list[str]
    remove_requested = Signal(str)
    collection_toggled = Signal(str, bool)  # name, used by this chat
    documents_requested = Signal()  # no collections yet: open the page that makes them

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachment_bar")
        self.attach_button = QToolButton(self)
        self.attach_button.setObjectName("attach_button")
        self.attach_button.setText("Attach files…")
        self.attach_button.setToolTip("Add documents to this chat (or drop files here): "
                                      "PDF, Word, HTML, Markdown, text and source code")
        self.attach_button.setAccessibleName("Attach files")
        self.attach_button.clicked.connect(self.choose_files)
        self.collections_menu = QMenu(self)
        self.collections_button = QToolButton(self)
        self.collections_button.setObjectName("collections_button")
        self.collections_button.setText("Collections")
        self.collections_button.setToolTip("Knowledge collections this chat answers from")
        self.collections_button.setMenu(self.collections_menu)
        self.collections_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.chips: list[AttachmentChip] = []
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(16, 2, 16, 0)
        self._row.setSpacing(6)
        self._row.addWidget(self.attach_button)
        self._row.addWidget(self.collections_button)
        self._row.addStretch(1)

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Attach documents", str(Path.home()),
                                                _DIALOG_FILTER)
        if paths:
            self.files_chosen.emit(paths)

    def show_sources(self, files: Sequence[FileInfo],
                     collections: Sequence[CollectionInfo], used: set[str]) -> None:
        for chip in self.chips:
            self._row.removeWidget(chip)
            chip.deleteLater()
        self.chips = []
        for file in files:
            chip = AttachmentChip(file, self)
            chip.remove_requested.connect(self.remove_requested)
            self._row.insertWidget(self._row.count() - 1, chip)
            self.chips.append(chip)
        self.collections_menu.clear()
        for info in collections:
            action = self.collections_menu.addAction(info.name)
            action.setCheckable(True)
            action.setChecked(info.name in used)
            action.toggled.connect(lambda on, name=info.name: self.collection_toggled.emit(
                name, on))
        if not collections:
            # A way there, not a greyed-out sentence to remember and find the page by.
            empty = self.collections_menu.addAction("No collections yet: add a folder on "
                                                    "the Documents page…")
            empty.triggered.connect(self.documents_requested)
        count = len(used)
        self.collections_button.setText(f"Collections ({count})" if count else "Collections")


class ChatDocuments(QObject):
    """The shown chat's documents and collections, and grounding its replies in them: the
    chat page's one part for documents (it owns the bar, the drops and the citations)."""

    problem = Signal(str)
    sources_changed = Signal()  # the chips were redrawn (tests wait on it)
    chat_made = Signal(object)  # int: a file was attached to a new chat, stored now

    def __init__(self, hearth: Hearth, page: ChatPageParts,
                 ensure_conversation: Callable[[], int]) -> None:
        """Put the bar above ``page``'s input and wire the page (see ``_wire``).
        ``ensure_conversation``: the shown chat's id, made first for a new chat."""
        parent = cast(QWidget, page)
        super().__init__(parent)
        self._hearth = hearth
        self.bar = AttachmentBar(parent)
        self._ensure = ensure_conversation
        self._conversation: int | None = None
        self._opened = False  # this window opened the knowledge library
        self.drops = FileDrops(self)
        self.drops.files_dropped.connect(self.attach)
        self.citations = CitationOpener(hearth, parent)
        self.citations.problem.connect(self.problem)
        self.bar.files_chosen.connect(self.attach)
        self.bar.remove_requested.connect(self.detach)
        self.bar.collection_toggled.connect(self.use_collection)
        self._wire(page)

    def _wire(self, page: ChatPageParts) -> None:
        """The bar sits above the message box; files dropped on the page or the message box
        are attached; the page's replies ground their requests here and show their sources;
        the chat it shows is the one listed."""
        column = page.layout()
        assert isinstance(column, QBoxLayout)
        column.insertWidget(column.indexOf(page.input), self.bar)
        for widget in (cast(QWidget, page), page.composer.viewport()):
            self.drops.watch(widget)
        page.replies.documents, page.replies.citations = self, self.citations
        page.conversation_changed.connect(self.show_chat)
        self.chat_made.connect(page.conversation_changed)

    def _chat(self) -> int:
        """The chat documents go to: made now for a new chat (so the list shows it)."""
        new = self._conversation is None
        self._conversation = self._ensure()
        if new:
            self.chat_made.emit(self._conversation)
        return self._conversation

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    async def knowledge(self) -> Knowledge:
        """The library, opened off the GUI thread on first use."""
        knowledge = await open_knowledge(self._hearth)
        self._opened = True
        return knowledge

    async def _in_use(self) -> bool:
        return self._opened or await self._call(lambda: self._hearth.knowledge_in_use)

    # -- the shown chat --------------------------------------------------------------------
    @asyncSlot(object)
    async def show_chat(self, conversation: int | None) -> None:
        """Show ``conversation``'s documents (None: a new chat, which has none yet)."""
        self._conversation = conversation
        await self._refresh()

    @asyncSlot()
    async def refresh(self) -> None:
        """Show the library's collections again (the Documents page changed them)."""
        await self._refresh()

    async def _refresh(self) -> None:
        conversation = self._conversation
        files: Sequence[FileInfo] = ()
        collections: Sequence[CollectionInfo] = ()
        used: set[str] = set()
        try:
            if await self._in_use():
                knowledge = await self.knowledge()
                collections = await self._call(knowledge.collections)
                if conversation is not None:
                    sources = await self._call(knowledge.chat_sources, conversation)
                    files, used = sources.files, {c.name for c in sources.collections}
        except BackendError as exc:
            self.problem.emit(exc.user_message)
        if conversation == self._conversation:  # not another chat's, shown meanwhile
            self.bar.show_sources(files, collections, used)
            self.sources_changed.emit()

    # -- intents ---------------------------------------------------------------------------
    @asyncSlot(list)
    async def attach(self, paths: list[str]) -> None:
        """Read each file into the shown chat (made now if new); one that can't be read is
        said by name, and the others are attached all the same."""
        conversation = self._chat()
        try:
            knowledge = await self.knowledge()
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            return
        for path in paths:
            try:
                await knowledge.attach_file(conversation, path)
            except BackendError as exc:
                self.problem.emit(exc.user_message)
        await self._refresh()

    @asyncSlot(str)
    async def detach(self, path: str) -> None:
        if self._conversation is None:
            return
        try:
            knowledge = await self.knowledge()
            await self._call(knowledge.detach_file, self._conversation, path)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
        await self._refresh()

    @asyncSlot(str, bool)
    async def use_collection(self, name: str, used: bool) -> None:
        conversation = self._chat()
        try:
            knowledge = await self.knowledge()
            change = knowledge.use_collection if used else knowledge.stop_using_collection
            await self._call(change, conversation, name)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
        await self._refresh()

    # -- replies ---------------------------------------------------------------------------
    async def ground(self, conversation: int, model: str, messages: Sequence[ChatMessage]
                     ) -> Grounding | None:
        """The reply's sources, or None when the chat has no documents or collections (the
        messages go as they are). Raises ``BackendError`` (the library can't be read)."""
        if not await self._in_use():
            return None
        knowledge = await self.knowledge()
        grounding = await knowledge.ground(model, messages, conversation_id=conversation)
        return grounding if grounding.mode != "none" else None


def grounded_stats(grounding: Grounding | None) -> dict[str, Any]:
    """What a grounded reply stores beside its stats: the citations and how they were chosen
    (the citation list's heading says "whole documents" or "best passages")."""
    if grounding is None or not grounding.citations:
        return {}
    return {**grounding.stats(), "sources_mode": grounding.mode}
