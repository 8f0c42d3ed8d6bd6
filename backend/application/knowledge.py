"""``Knowledge``: documents in chats and the knowledge library, for every front end.

``Hearth.knowledge`` (opened on first use). What a front end does with it:

* the library: ``add_folder`` (a collection named after the folder unless given), ``pause`` /
  ``resume`` (saved: a pause holds across restarts), ``rescan``, ``remove_folder``,
  ``delete_collection``, ``collections`` and ``files`` (each file's state and error), and
  ``events``: an ``EventHub`` of ``IndexProgress``, ``FileIndexed``, ``FileFailed`` and
  ``FileForgotten`` to read with ``async for e in knowledge.events.stream()``;
* a chat: ``attach_file`` (read now; raises ``DocumentUnreadable`` with the reason),
  ``detach_file``, ``use_collection`` / ``stop_using_collection``, ``chat_sources``;
* a question: ``ground(model, messages, conversation_id=…, collections=…)`` gives the
  ``Grounding`` (the messages to send and the citations to show and store, see
  ``grounding.py``); ``search`` gives passages alone; ``passage`` opens one by id.

Indexing runs on its own thread (``backend/knowledge/indexer.py``); vectors come from the
embedding model the settings name, else the first downloaded of the catalog's, through the
same ``EmbeddingService`` as the API's endpoints (batched between the chats' decode steps).
With no embedding model, search is by full text alone and the progress events say why.

Threading: methods are safe from any thread; those not async are *blocking* (SQLite reads
and writes of a few ms; ``wait_idle`` waits), so a GUI calls them off its thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.application.embeddings import EmbeddingService
from backend.application.grounding import (
    Grounding,
    Source,
    citation_for,
    context_budget,
    cost,
    grounded,
    last_question,
    within_budget,
)
from backend.engine.types import ChatMessage
from backend.errors import BackendError, DocumentUnreadable, InvalidRequest
from backend.events import EventHub
from backend.knowledge.chunking import join_chunks
from backend.knowledge.database import Database
from backend.knowledge.indexer import Indexer
from backend.knowledge.library_store import CHAT_PREFIX, LibraryStore
from backend.knowledge.passage_store import PassageStore
from backend.knowledge.records import Citation, CollectionInfo, FileInfo, KnowledgeEvent, Passage
from backend.knowledge.retrieval import CANDIDATES, VectorIndex, reciprocal_rank_fusion
from backend.knowledge.scanner import printable
from backend.library.image_tokens import FALLBACK_IMAGE_TOKENS
from backend.settings_store import SettingsStore

ContextSize = Callable[[str], int]  # model name → its context per slot (blocking)
ImageTokens = Callable[[str], int]  # model name → the most tokens one image takes (blocking)
ModelChoice = Callable[[], tuple[str | None, str, str, str]]  # (model, why, query/doc prefix)


@dataclass(frozen=True)
class ChatSources:
    files: tuple[FileInfo, ...]  # attached to this chat
    collections: tuple[CollectionInfo, ...]  # library collections it uses


class Knowledge:
    def __init__(self, settings: SettingsStore, embeddings: EmbeddingService,
                 choose_model: ModelChoice, context_size: ContextSize,
                 database: Database | None = None,
                 image_tokens: ImageTokens = lambda _: FALLBACK_IMAGE_TOKENS) -> None:
        self._settings = settings
        self._embeddings = embeddings
        self._choose_model = choose_model
        self._context_size = context_size
        self._image_tokens = image_tokens
        self._db = database or Database.open_default()
        self.library = LibraryStore(self._db)
        self._passages = PassageStore(self._db)
        self._vectors = VectorIndex(self._passages)
        minutes = settings.snapshot().knowledge.rescan_minutes
        self._indexer = Indexer(self.library, self._passages, embed=self._embed_documents,
                                model=self._model, rescan_interval_s=minutes * 60)
        self.events: EventHub[KnowledgeEvent] = self._indexer.events
        # Work left when Hearth closed (pending files, missing vectors) goes on now.
        self._indexer.wake()

    # -- the library -----------------------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        return self.library.list("library")

    def collection(self, name: str) -> CollectionInfo:
        return self.library.get(name)

    def create_collection(self, name: str) -> CollectionInfo:
        return self.library.create(name)

    def add_folder(self, folder: str | Path, collection: str | None = None) -> CollectionInfo:
        """Index ``folder`` (and its subfolders) into ``collection``, made if new (named
        after the folder when not given). Indexing runs in the background."""
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise InvalidRequest(f"{printable(str(path))} isn't a folder Hearth can open.")
        if printable(str(path)) != str(path):  # the library stores paths as UTF-8 text
            raise InvalidRequest(f"The folder {printable(str(path))} has a name that isn't "
                                 "valid UTF-8; rename it (or the folder holding it) first.")
        name = collection or path.name or str(path)
        info = self.library.find(name) or self.library.create(name)
        self.library.add_folder(info.id, path)
        self._indexer.wake(info.id)
        return self.library.get(info.id)

    def remove_folder(self, collection: str, folder: str | Path) -> None:
        info = self.library.get(collection)
        self.library.forget(self.library.remove_folder(info.id, Path(folder).expanduser()
                                                       .resolve()))
        self._vectors.forget(info.id)

    def delete_collection(self, collection: str) -> None:
        info = self.library.get(collection)
        self.library.delete(info.id)
        self._vectors.forget(info.id)

    def pause(self, collection: str) -> None:
        self.library.set_paused(self.library.get(collection).id, True)

    def resume(self, collection: str) -> None:
        info = self.library.get(collection)
        self.library.set_paused(info.id, False)
        self._indexer.wake(info.id)

    def rescan(self, collection: str | None = None) -> None:
        self._indexer.wake(self.library.get(collection).id if collection else None)

    def files(self, collection: str) -> list[FileInfo]:
        return self.library.files(self.library.get(collection).id)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocking: until indexing has nothing left to do; False on timeout."""
        return self._indexer.wait_idle(timeout)

    # -- chats -----------------------------------------------------------------------------
    def _chat_collection(self, conversation_id: int) -> CollectionInfo:
        name = f"{CHAT_PREFIX}{conversation_id}"
        info = self.library.find(name)
        if info is None:
            info = self.library.create(name, kind="chat")
            self.library.attach(conversation_id, info.id)
        return info

    async def attach_file(self, conversation_id: int, path: str | Path) -> FileInfo:
        """Read ``path`` into the chat now; its vectors follow in the background. Raises
        ``DocumentUnreadable`` (said per file: encrypted, too large, binary…)."""
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise DocumentUnreadable(f"{printable(file.name)} isn't a file Hearth can open.")
        if printable(str(file)) != str(file):  # the library stores paths as UTF-8 text
            raise DocumentUnreadable(f"{printable(file.name)}: its name (or its folder's) "
                                     "isn't valid UTF-8; rename it, then attach it again.")
        info = await asyncio.to_thread(self._chat_collection, conversation_id)
        stat = file.stat()
        await asyncio.to_thread(self.library.mark_pending, info.id,
                                [(str(file), stat.st_size, stat.st_mtime_ns)])
        # By path, in any state: the indexer's thread may have read it meanwhile (reading
        # twice is harmless: a file's passages are replaced whole).
        row = next(f for f in await asyncio.to_thread(self.library.files, info.id)
                   if f.path == str(file))
        if row.state == "failed":
            raise DocumentUnreadable(row.error or f"{file.name} couldn't be read.")
        if row.state == "pending":
            await self._indexer.read_file(info, row)
        self._indexer.wake(info.id, rescan=False)
        found = self.library.file(row.id)
        assert found is not None
        return found

    def detach_file(self, conversation_id: int, path: str | Path) -> None:
        info = self._chat_collection(conversation_id)
        target = str(Path(path).expanduser().resolve())
        self.library.forget(f.id for f in self.library.files(info.id) if f.path == target)

    def use_collection(self, conversation_id: int, collection: str) -> None:
        self.library.attach(conversation_id, self.library.get(collection).id)

    def stop_using_collection(self, conversation_id: int, collection: str) -> None:
        self.library.detach(conversation_id, self.library.get(collection).id)

    def chat_sources(self, conversation_id: int) -> ChatSources:
        attached = self.library.attached(conversation_id)
        files = [f for c in attached if c.kind == "chat" for f in self.library.files(c.id)]
        return ChatSources(tuple(files), tuple(c for c in attached if c.kind == "library"))

    # -- questions -------------------------------------------------------------------------
    async def search(self, query: str, collections: Sequence[str], limit: int = 5, *,
                     mode: str = "hybrid") -> list[Passage]:
        """The best passages for ``query`` in ``collections``: ``mode`` "hybrid" (BM25 and
        vectors fused), "text" or "vector"."""
        ids = [self.library.get(name).id for name in collections]
        return await self._search(query, ids, limit, mode)

    async def _search(self, query: str, collection_ids: Sequence[int], limit: int,
                      mode: str = "hybrid") -> list[Passage]:
        if mode not in ("hybrid", "text", "vector"):
            raise InvalidRequest("Search mode is hybrid, text or vector.")
        rankings: list[list[int]] = []
        if mode != "vector":
            rankings.append(await asyncio.to_thread(self._passages.full_text, collection_ids,
                                                    query, CANDIDATES))
        if mode != "text":
            model, _, query_prefix, _ = await asyncio.to_thread(self._choose_model)
            if model is not None:
                try:
                    embedded = await self._embeddings.embed(model, [query_prefix + query])
                except BackendError:
                    embedded = None  # vectors unavailable now: the words alone still rank
                if embedded is not None:
                    rankings.append(await asyncio.to_thread(
                        self._vectors.search, collection_ids, model, embedded.vectors[0]))
        fused = reciprocal_rank_fusion(rankings)[:limit]
        found = await asyncio.to_thread(self._passages.passages, [i for i, _ in fused])
        scores = dict(fused)
        return [Passage(**{**p.__dict__, "score": scores.get(p.chunk_id, 0.0)}) for p in found]

    def passage(self, chunk_id: int) -> Passage | None:
        """One passage by the id a citation holds (what clicking a citation opens)."""
        found = self._passages.passages([chunk_id])
        return found[0] if found else None

    def document_text(self, path: str) -> str | None:
        """A document's whole text as indexed (what a whole-document citation opens); None
        when it is no longer in the index."""
        found = self.library.files_at(path)
        if not found:
            return None
        chunks = self._passages.document_chunks(found[0].id)
        return join_chunks([(c.start, c.end, c.text) for c in chunks])

    async def ground(self, model: str, messages: Sequence[ChatMessage], *,
                     conversation_id: int | None = None, collections: Sequence[str] = (),
                     n_ctx: int | None = None) -> Grounding:
        """The request's sources for the last user turn: the chat's attached documents whole
        when they fit ``model``'s context (``n_ctx``, else the loaded or planned one) with
        room to answer, else the best passages of the attachments and of the chat's and the
        given collections."""
        question = last_question(messages)
        settings = self._settings.snapshot().knowledge
        sources = (await asyncio.to_thread(self.chat_sources, conversation_id)
                   if conversation_id is not None else ChatSources((), ()))
        named = [await asyncio.to_thread(self.library.get, c) for c in collections]
        library_ids = list(dict.fromkeys([c.id for c in sources.collections]
                                         + [c.id for c in named]))
        indexed = [f for f in sources.files if f.state == "indexed"]
        if not question.strip() or (not indexed and not library_ids):
            return Grounding(tuple(messages), (), "none")
        size = n_ctx or await asyncio.to_thread(self._context_size, model)
        per_image = (await asyncio.to_thread(self._image_tokens, model)
                     if any(m.images for m in messages) else 0)
        budget = context_budget(size, messages, settings.answer_room_tokens, per_image)
        if indexed and settings.whole_documents:
            whole = await asyncio.to_thread(self._whole_documents, indexed)
            need = sum(cost(s.text) for s in whole)
            if need <= budget:
                extra: list[Source] = []
                if library_ids:
                    extra = within_budget(await self._retrieved(question, library_ids,
                                                                settings.passages),
                                          budget - need)
                return grounded(messages, [*whole, *extra], "whole")
        chat_ids = list(dict.fromkeys(f.collection_id for f in indexed))
        retrieved = await self._retrieved(question, chat_ids + library_ids, settings.passages)
        kept = within_budget(retrieved, budget)
        note = "" if len(kept) == len(retrieved) else (
            f"{len(retrieved) - len(kept)} of {len(retrieved)} passages didn't fit the "
            "context and were left out.")
        return grounded(messages, kept, "retrieved", note)

    async def _retrieved(self, question: str, collection_ids: Sequence[int],
                         limit: int) -> list[Source]:
        passages = await self._search(question, collection_ids, limit)
        return [Source(citation_for(0, p), p.text) for p in passages]

    def _whole_documents(self, files: Sequence[FileInfo]) -> list[Source]:
        out = []
        for f in files:
            chunks = self._passages.document_chunks(f.id)
            text = join_chunks([(c.start, c.end, c.text) for c in chunks])
            out.append(Source(Citation(0, f.path, f.title or f.name, None, None, 0, len(text),
                                       " ".join(text[:160].split())), text))
        return out

    # -- vectors (the indexer's thread) ----------------------------------------------------
    async def _model(self) -> tuple[str | None, str]:
        model, why, _, _ = await asyncio.to_thread(self._choose_model)
        return model, why

    async def _embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        model, _, _, prefix = await asyncio.to_thread(self._choose_model)
        if model is None:
            raise InvalidRequest("No embedding model is available.")
        return (await self._embeddings.embed(model, [prefix + t for t in texts])).vectors

    def close(self) -> None:
        self._indexer.close()
        self._db.close()
