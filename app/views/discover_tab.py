"""The Models page's *Discover* tab: Hearth's catalog and Hugging Face Hub search, as cards.

Each model is a card (``model_cards``, drawn by ``card_delegate``): name, parameters, size
range, licence, a one-line description, and the variant that runs best on this computer with
its fit badge. The catalog's cards need no network: their fits are estimated from the
catalog's shapes and sizes (``LibraryService.catalog_cards``). Typing filters the catalog at
once; Enter (or *Search the Hub*) adds the Hub's matches below it. Picking a card shows its
variants on the right (``CardDetails``), the Hub's exact files replacing the estimates when
it answers.

Everything the Hub says goes to one notice line of fixed height above the list: a Hub that
can't be reached is one sentence there (not a banner too, and not again in the details), and
nothing below moves when it appears or changes.

Threading contract: GUI thread; library calls run off-thread through the page's ``Work``.
An answer for a query or a repo the person has already moved away from is dropped.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.style import mark_error
from app.views.card_delegate import CardDelegate
from app.views.card_details import CardDetails
from app.views.model_cards import CardListModel, ModelCard
from app.views.model_items import QuantsModel
from app.views.widgets import button
from app.views.work import Work
from backend.api import CatalogCard, Hearth, QuantChoice
from backend.errors import BackendError, HubUnavailable

NOTICE_LINES = 3  # the longest Hub sentence wraps to three lines at 800 px


def download_problem(what: str, exc: BackendError) -> str:
    """Why ``what`` didn't start downloading, and what to do meanwhile. The bare Hub sentence
    was the one the search had already put in the notice, so pressing Download offline
    changed nothing on screen: it looked as if the button did nothing. Kept to three lines
    at 800 px; the Hub's own sentence (its cause) is the notice's tooltip."""
    if isinstance(exc, HubUnavailable):
        return (f"{what} didn't start downloading: the Hugging Face Hub can't be reached. "
                "Check the connection and press Download again; meanwhile, chat with the "
                "built-in model, or add a .gguf file you have with Import .gguf… on the "
                "Downloaded tab.")
    return f"{what} didn't start downloading: {exc.user_message}"


class Notice(QLabel):
    """One line (up to three when wrapped) of fixed height: what the tab wants to say now."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("discover_notice")
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * NOTICE_LINES + 6)
        self.problem = False

    def say(self, text: str, *, problem: bool = False, detail: str = "") -> None:
        """``detail``: more than the line has room for, on hover (else the line itself)."""
        self.problem = problem
        self.setProperty("tone", "problem" if problem else "info")  # for the style sheet
        self.setText(("⚠ " if problem else "") + text)  # not by colour alone
        self.setToolTip(detail or text)  # the whole sentence, should a narrow window clip it
        self.setAccessibleName(("Problem: " if problem else "") + text)
        mark_error(self, problem)  # the theme's error colour, light or dark


class DiscoverTab(QWidget):
    download_started = Signal(str)  # a download's id, as soon as it was added

    def __init__(self, hearth: Hearth, work: Work, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._work = work
        self._quants_for: str | None = None  # the repo whose files the table shows or awaits
        self._searching: str | None = None  # the query the Hub is being asked
        self._reselecting = False
        self.search_box = QLineEdit(self)
        self.search_box.setObjectName("search_box")
        self.search_box.setPlaceholderText("Filter the catalog; Enter searches the Hugging "
                                           "Face Hub")
        self.search_box.setAccessibleName("Filter models, or search the Hub with Enter")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.textChanged.connect(self._filter)
        self.search_box.returnPressed.connect(self.search)
        self.search_button = button("Search the Hub", "search_button", self, self.search)
        self.search_button.setToolTip("Search GGUF models on the Hugging Face Hub")
        self.catalog_button = button("Catalog", "catalog_button", self, self.show_catalog)
        self.catalog_button.setToolTip("Hearth's list of well-known models (works offline)")
        self.catalog_button.setAccessibleName("Show Hearth's catalog")
        self.notice = Notice(self)
        self.repo_model = CardListModel(self)
        self.repo_list = QListView(self)
        self.repo_list.setObjectName("repo_list")
        self.repo_list.setAccessibleName("Models")
        self.repo_list.setModel(self.repo_model)
        self.repo_list.setItemDelegate(CardDelegate(self.repo_list))
        self.repo_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.repo_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.repo_list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.repo_list.setResizeMode(QListView.ResizeMode.Adjust)
        # Cards are as wide as the list (see CardDelegate.sizeHint): never scroll sideways.
        self.repo_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.repo_list.setMouseTracking(True)  # hover tint
        self.repo_list.selectionModel().currentChanged.connect(self._repo_selected)
        self.repo_list.activated.connect(lambda _index: self.details.best_button.setFocus())
        self.details = CardDetails(self)
        self.details.download_requested.connect(self.download)
        self._lay_out()
        self.notice.say("Hearth's catalog is loading…")

    def _lay_out(self) -> None:
        search = QHBoxLayout()
        search.addWidget(self.search_box, 1)
        search.addWidget(self.search_button)
        search.addWidget(self.catalog_button)
        split = QSplitter(self)
        split.setObjectName("discover_split")
        split.addWidget(self.repo_list)
        split.addWidget(self.details)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([420, 480])
        layout = QVBoxLayout(self)
        layout.addLayout(search)
        layout.addWidget(self.notice)
        layout.addWidget(split, 1)
        # Tab follows the layout: search, its buttons, the cards, then the picked model's
        # download button and files.
        for a, b in ((self.search_box, self.search_button),
                     (self.search_button, self.catalog_button),
                     (self.catalog_button, self.repo_list),
                     (self.repo_list, self.details.best_button),
                     (self.details.best_button, self.details.quant_table)):
            QWidget.setTabOrder(a, b)

    # -- what the old single-pane tab exposed, for tests and the screenshots script ----------
    @property
    def quant_model(self) -> QuantsModel:
        return self.details.quant_model

    @property
    def quant_table(self) -> QWidget:
        return self.details.quant_table

    @property
    def quant_status(self) -> QLabel:
        return self.details.quant_status

    def download_button(self, quant: str) -> QWidget | None:
        return self.details.download_button(quant)

    # -- the list ----------------------------------------------------------------------------
    def set_catalog(self, cards: list[CatalogCard]) -> None:
        """The catalog's cards (built off the GUI thread when the page started)."""
        self.repo_model.set_catalog([ModelCard.from_catalog(c) for c in cards])
        self._filter(self.search_box.text())

    @Slot()
    def show_catalog(self) -> None:
        """The whole catalog again: no filter, no Hub results."""
        self.search_box.clear()  # textChanged → _filter, which drops the Hub's results
        self._filter("")

    def _filter(self, text: str) -> None:
        """As the person types: the catalog narrows at once; Hub results for an earlier
        query no longer answer this one, so they go until Enter asks again."""
        if self.repo_model.hub_count:
            self.repo_model.set_hub([])
        self.repo_model.set_filter(text)
        self._reselect()
        query = text.strip()
        count = self.repo_model.rowCount()
        if not query:
            self.notice.say(f"Hearth's catalog: {count} well-known models, with how each fits "
                            "this computer (works offline). Type to filter; press Enter to "
                            "search the Hugging Face Hub.")
        elif count:
            noun = "model matches" if count == 1 else "models match"
            self.notice.say(f"{count} catalog {noun} “{query}”. Press Enter to search the "
                            "Hugging Face Hub too.")
        else:
            self.notice.say(f"No catalog model matches “{query}”. Press Enter to search the "
                            "Hugging Face Hub.")

    def _reselect(self) -> None:
        """Keep the card whose files are shown selected after the list changed."""
        row = self.repo_model.row_of(self._quants_for) if self._quants_for else None
        if row is not None:
            index = self.repo_model.index(row)
            self._reselecting = True  # the same card: its files are already shown
            try:
                self.repo_list.setCurrentIndex(index)
            finally:
                self._reselecting = False
            self.repo_list.scrollTo(index)

    @asyncSlot()
    async def search(self) -> None:
        query = self.search_box.text().strip()
        if not query:
            self.show_catalog()
            return
        self._searching = query
        with self._work.running():
            self.search_button.setEnabled(False)
            self.notice.say(f"Searching the Hugging Face Hub for “{query}”…")
            try:
                found = await self._work.off_thread(self._hearth.library.search, query)
            except BackendError as exc:
                if self._searching == query:
                    self.notice.say(exc.user_message, problem=True)  # here only: no banner
                return
            finally:
                self.search_button.setEnabled(True)
            if self._searching != query or self.search_box.text().strip() != query:
                return  # the person typed on: this answer is for another query
            self.repo_model.set_hub([ModelCard.from_hub(s) for s in found])
            self._reselect()
            noun = "repository matches" if len(found) == 1 else "repositories match"
            self.notice.say(f"{len(found)} GGUF {noun} “{query}” on the Hub." if found
                            else f"No GGUF repositories on the Hub match “{query}”.")

    # -- one model's files -------------------------------------------------------------------
    def _repo_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        card = self.repo_model.row_at(current.row())
        if card is not None and not self._reselecting:
            self.show_quants(card.repo)  # picked again after a failure: the Hub is asked again

    @asyncSlot(str)
    async def show_quants(self, repo_id: str) -> None:
        """Show ``repo_id``'s card and variants: the catalog's estimates at once, then the
        Hub's exact files with fits read from their headers. A late answer is dropped."""
        self._quants_for = repo_id
        row = self.repo_model.row_of(repo_id)
        card = self.repo_model.row_at(row) if row is not None else None
        reading = (f"Sizes and fits are estimates from Hearth's catalog; reading {repo_id}'s "
                   "files from the Hub…" if card and card.quants else
                   f"Reading {repo_id}'s files and checking how each fits this computer…")
        self.details.show_card(card, reading)
        with self._work.running():
            try:
                choices = await self._work.off_thread(self._hearth.library.quants, repo_id)
            except BackendError as exc:
                if self._quants_for == repo_id:
                    self.notice.say(exc.user_message, problem=True)  # the one place it shows
                    self.details.show_card(card, "Sizes and fits are estimates from Hearth's "
                                           "catalog; the Hub names the exact file when you "
                                           "download." if card and card.quants else "")
                return
            if self._quants_for != repo_id:
                return  # the person moved on to another model meanwhile
            known = card or ModelCard(repo_id, repo_id, (), "", in_catalog=False)
            updated = known.with_quants(choices)
            self.repo_model.replace(updated)
            self.details.show_card(updated, (
                f"{len(choices)} file{'s' if len(choices) != 1 else ''} on the Hub. Hover a "
                "fit for the reason.") if choices else
                f"{repo_id} has no GGUF model files to download.")

    @asyncSlot(object)
    async def download(self, choice: QuantChoice) -> None:
        library = self._hearth.library
        with self._work.running():
            try:
                if choice.estimated:  # from the catalog: the Hub names the exact files first
                    download_id = await self._work.off_thread(
                        library.download_quant, choice.repo, choice.option.quant)
                else:
                    download_id = await self._work.off_thread(library.download, choice.repo,
                                                              choice.option)
            except BackendError as exc:
                row = self.repo_model.row_of(choice.repo)
                card = self.repo_model.row_at(row) if row is not None else None
                name = card.title if card is not None else choice.repo
                self.notice.say(download_problem(f"{name} {choice.option.quant}", exc),
                                problem=True, detail=exc.user_message)
                return
            self.notice.say(f"Downloading {choice.repo} {choice.option.quant}: follow it on "
                            "the Downloads tab.")
            self.download_started.emit(download_id)
