"""Which embedding model the knowledge library uses, and the prefixes its authors ask for.

The setting (``knowledge.embedding_model``) when given; else the first of the catalog's
embedding models (in the catalog's order of preference) that is downloaded; else any model
in the person's folders whose header says it embeds. With none, the library searches by full
text alone and says how to get vectors. A model's task prefixes (nomic-embed-text's
"search_query: " / "search_document: ") come from its catalog entry: without them its
vectors for questions and passages land apart and retrieval gets worse.

The answer is kept for ``TTL_S`` (the indexer asks per batch; listing the model folders on
each ask would cost more than the batch).

Threading: ``choose`` is blocking (lists models, reads headers); any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from backend.library.catalog import CatalogEntry, embedding_entries, find_entry
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.local import LocalModel
from backend.settings_store import SettingsStore

TTL_S = 30.0
NO_MODEL = ("Documents are searched by their words only. Download an embedding model "
            "(`hearth pull nomic-embed-text:v1.5`, or all-minilm:l6-v2 for a small one) to "
            "search by meaning too.")
Choice = tuple[str | None, str, str, str]  # model id, why none, query prefix, document prefix


class EmbeddingChoice:
    def __init__(self, settings: SettingsStore, models: Callable[[], list[LocalModel]]
                 ) -> None:
        self._settings = settings
        self._models = models
        self._lock = threading.Lock()
        self._cached: tuple[float, str | None, Choice] | None = None

    def choose(self) -> Choice:
        wanted = self._settings.snapshot().knowledge.embedding_model
        with self._lock:
            if self._cached and self._cached[1] == wanted and \
                    time.monotonic() - self._cached[0] < TTL_S:
                return self._cached[2]
        choice = self._pick(wanted)
        with self._lock:
            self._cached = (time.monotonic(), wanted, choice)
        return choice

    def forget(self) -> None:
        """Look again on the next ask (a model was downloaded or deleted)."""
        with self._lock:
            self._cached = None

    def _pick(self, wanted: str | None) -> Choice:
        models = [m for m in self._models() if m.usable]
        if wanted:
            entry = find_entry(wanted)
            local = next((m for m in models if m.id == wanted or (
                entry is not None and m.repo and m.repo.lower() == entry.repo.lower())), None)
            if local is not None and entry is None and local.repo:
                entry = find_entry(local.repo)
            return (local.id if local else wanted, "", *_prefixes(entry))
        for entry in embedding_entries():
            local = next((m for m in models if m.repo and m.repo.lower() == entry.repo.lower()),
                         None)
            if local is not None:
                return local.id, "", *_prefixes(entry)
        for model in models:
            try:
                if read_gguf_metadata(model.path).embedding_only:
                    return model.id, "", "", ""
            except Exception:  # an unreadable header: not this one
                continue
        return None, NO_MODEL, "", ""


def _prefixes(entry: CatalogEntry | None) -> tuple[str, str]:
    traits = entry.embedding if entry is not None else None
    return (traits.query_prefix, traits.document_prefix) if traits else ("", "")
