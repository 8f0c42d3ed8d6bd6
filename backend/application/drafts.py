"""Which draft model suits a model (speculative decoding): the catalog's suggestion for its
family, and whether it is installed. Pure but for the catalog file; any thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.errors import ModelNotFound
from backend.library.catalog import find_entry
from backend.library.local import LocalModel, resolve_model


@dataclass(frozen=True)
class DraftSuggestion:
    name: str  # what to pull and pass as `--speculative draft:NAME`
    installed: bool

    def advice(self) -> str:
        """A sentence saying how to use it."""
        use = f"--speculative draft:{self.name}, or pick it as the panel's Draft model"
        if self.installed:
            return f"{self.name} is installed: use {use}."
        return f"Download it first (hearth pull {self.name}), then use {use}."


def suggest_draft(model: LocalModel, models: Sequence[LocalModel]) -> DraftSuggestion | None:
    """The catalog's draft model for ``model`` (found by its repo, else by its name), or None
    when the catalog suggests none (or ``model`` is no catalog model)."""
    entry = (find_entry(model.repo) if model.repo else None) or find_entry(model.id)
    if entry is None or not entry.draft:
        return None
    try:
        resolve_model(entry.draft, models=list(models))
        installed = True
    except ModelNotFound:
        installed = False
    return DraftSuggestion(entry.draft, installed)
