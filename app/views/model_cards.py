"""The Discover tab's cards: one value per model, and the list model that filters them.

A ``ModelCard`` is what a card shows (name, parameters, size range, licence, a one-line
description, the best quant for this machine with its fit badge), made from a catalog card
(``CatalogCard``: known offline) or a Hub search result (filled in once its files are read).
``CardListModel`` is a thin adapter: the catalog's cards filtered by what is typed, then the
Hub's answer to the last search. No I/O anywhere here; GUI thread only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from backend.api import CatalogCard, QuantChoice, best_quant, human_size

if TYPE_CHECKING:  # the Hub client loads only when the Hub is searched
    from backend.api import RepoSummary

AnyIndex = QModelIndex | QPersistentModelIndex
Role = Qt.ItemDataRole
CARD_ROLE = Role.UserRole + 1  # the row's ModelCard itself (the same role as model_items' ROW)

# "SmolLM2-135M-Instruct" → 135M; "Llama-3.2-3B" → 3B; "Qwen3-30B-A3B" → 30B (the first).
_PARAMS_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([BM])(?![a-z])", re.IGNORECASE)


def size_range_text(low: int, high: int) -> str:
    if high <= 0:
        return ""
    return human_size(low) if low == high else f"{human_size(low)}–{human_size(high)}"


@dataclass(frozen=True)
class ModelCard:
    repo: str
    title: str  # the catalog alias, or the repo's name
    facts: tuple[str, ...]  # "1.2B parameters", "810 MB–1.3 GB", "Llama 3.2 licence"
    description: str  # one line
    best: QuantChoice | None = None  # what runs best here; None until a Hub repo is opened
    quants: tuple[QuantChoice, ...] = ()  # every variant known (catalog estimates, or exact)
    default_quant: str | None = None
    recommended: bool = False  # the model the welcome offers for this computer
    in_catalog: bool = True
    search_text: str = ""  # lower-case words the filter looks in

    @classmethod
    def from_catalog(cls, card: CatalogCard) -> ModelCard:
        entry = card.entry
        facts = (entry.parameters_label, size_range_text(*entry.size_range),
                 entry.licence_label)
        quants = " ".join(entry.quants)
        return cls(entry.repo, entry.alias, tuple(f for f in facts if f), entry.description,
                   card.best, card.quants, entry.default_quant, card.recommended, True,
                   " ".join((entry.alias, entry.repo, entry.description, entry.license,
                             entry.licence_label, entry.parameters_label, quants)).lower())

    @classmethod
    def from_hub(cls, summary: RepoSummary) -> ModelCard:
        owner, _, name = summary.id.rpartition("/")
        found = _PARAMS_IN_NAME.search(name)
        params = f"{found.group(1)}{found.group(2).upper()} parameters" if found else ""
        stats = f"{summary.downloads:,} downloads · {summary.likes:,} likes"
        facts = tuple(f for f in (params, stats, "gated: accept its licence on the Hub first"
                                  if summary.gated else "") if f)
        return cls(summary.id, name or summary.id, facts, f"On the Hugging Face Hub, by "
                   f"{summary.author or owner}.", in_catalog=False,
                   search_text=summary.id.lower())

    def with_quants(self, choices: Sequence[QuantChoice]) -> ModelCard:
        """The card once the Hub listed the repo's files: exact sizes and fits."""
        sizes = [c.option.total_size for c in choices]
        facts = self.facts
        if sizes and not self.in_catalog:  # a catalog card already shows its range
            facts = (*facts, size_range_text(min(sizes), max(sizes)))
        return dataclasses.replace(self, quants=tuple(choices), facts=facts,
                                   best=best_quant(choices, self.default_quant))

    @property
    def best_line(self) -> str:
        if self.best is None:
            return "Open it to see its files and how each fits this computer"
        approx = "about " if self.best.estimated else ""
        return (f"Best here: {self.best.option.quant}, "
                f"{approx}{human_size(self.best.option.total_size)}")

    @property
    def accessible_text(self) -> str:
        """Everything the card shows, as one sentence for screen readers."""
        parts = [self.title, *self.facts]
        text = ", ".join(parts) + ". " + self.description
        if self.recommended:
            text += " Recommended for this computer."
        fit = f" ({self.best.fit.label})" if self.best is not None else ""
        return f"{text} {self.best_line}{fit}."


def _matches(card: ModelCard, words: Sequence[str]) -> bool:
    return all(w in card.search_text for w in words)


class CardListModel(QAbstractListModel):
    """The catalog's cards matching the filter, then the Hub's results for the last search
    (a Hub result the catalog knows shows as the catalog's card: it has more to say)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._catalog: list[ModelCard] = []
        self._hub: list[ModelCard] = []
        self._words: tuple[str, ...] = ()
        self._rows: list[ModelCard] = []

    # -- changing ---------------------------------------------------------------------------
    def set_catalog(self, cards: Sequence[ModelCard]) -> None:
        self._catalog = list(cards)
        self._rebuild()

    def set_hub(self, cards: Sequence[ModelCard]) -> None:
        self._hub = list(cards)
        self._rebuild()

    def set_filter(self, text: str) -> None:
        words = tuple(text.lower().split())
        if words != self._words:
            self._words = words
            self._rebuild()

    def replace(self, card: ModelCard) -> None:
        """A card with more known (its files were read): updated in place, wherever it is."""
        for cards in (self._catalog, self._hub):
            for i, old in enumerate(cards):
                if old.repo == card.repo:
                    cards[i] = card
        for i, old in enumerate(self._rows):
            if old.repo == card.repo:
                self._rows[i] = card
                self.dataChanged.emit(self.index(i), self.index(i))

    def _rebuild(self) -> None:
        self.beginResetModel()
        shown = [c for c in self._catalog if _matches(c, self._words)]
        known = {c.repo.lower(): c for c in self._catalog}
        seen = {c.repo.lower() for c in shown}
        for card in self._hub:
            key = card.repo.lower()
            if key not in seen:
                shown.append(known.get(key, card))
                seen.add(key)
        self._rows = shown
        self.endResetModel()

    # -- reading ----------------------------------------------------------------------------
    def rows(self) -> list[ModelCard]:
        return list(self._rows)

    def row_at(self, row: int) -> ModelCard | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, repo: str) -> int | None:
        return next((i for i, c in enumerate(self._rows) if c.repo == repo), None)

    @property
    def hub_count(self) -> int:
        return len(self._hub)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Role.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        card = self._rows[index.row()]
        if role == Role.DisplayRole:
            return card.title
        if role == CARD_ROLE:
            return card
        if role == Role.AccessibleTextRole:
            return card.accessible_text
        if role == Role.ToolTipRole:
            reason = f"\n\n{card.best.fit.label}: {card.best.fit.reason}" if card.best else ""
            return f"{card.repo}\n{card.description}{reason}"
        return None
