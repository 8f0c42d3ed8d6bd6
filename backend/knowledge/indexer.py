"""``Indexer``: the knowledge library's background worker.

One daemon thread runs an asyncio loop of its own, so indexing goes on whatever front end is
open (the window's qasync loop, a ``hearth docs`` command, the API server) and outlives any
one of them. A pass over each collection that isn't paused:

1. scan its folders (``scanner.scan``): new and changed files become "pending", files gone
   are forgotten (``FileForgotten``);
2. read each pending file on a worker thread (``parse_document``), cut it into chunks, and
   replace its passages in one transaction: full-text search finds them at once
   (``FileIndexed``); a file that can't be read is marked "failed" with its sentence
   (``FileFailed``) and the pass goes on; a file deleted while being read is forgotten;
3. embed the chunks that have no vector from the current embedding model, a batch at a time
   (the engine decodes each between two of the chats' decode steps).

Progress goes to ``events`` after every file and batch (``IndexProgress``). A pause is checked
between files and batches, and is saved, so it holds across restarts; work left "pending"
when Hearth closed is picked up by the first pass after it starts again. Passes run when
woken (a folder added, resume, ``rescan``) and every ``rescan_interval_s``.

Threading: public methods are safe from any thread; the work runs on the indexer's thread
and on worker threads it starts; events are published from the indexer's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from backend.errors import BackendError, DocumentUnreadable
from backend.events import EventHub
from backend.knowledge.chunking import Chunk, chunk_sections
from backend.knowledge.documents import Limits, ParsedDocument
from backend.knowledge.library_store import LibraryStore
from backend.knowledge.parsing import parse_document
from backend.knowledge.passage_store import PassageStore
from backend.knowledge.records import (
    CollectionInfo,
    FileFailed,
    FileForgotten,
    FileIndexed,
    FileInfo,
    IndexProgress,
    KnowledgeEvent,
)
from backend.knowledge.scanner import scan

log = logging.getLogger(__name__)

EMBED_BATCH = 32  # chunks per embedding request (the engine splits it into decodes)
# The texts' vectors from the current embedding model.
EmbedDocuments = Callable[[Sequence[str]], Awaitable[list[list[float]]]]
# The current embedding model's name, or None (full-text search only) and the reason why.
ModelChoice = Callable[[], Awaitable[tuple[str | None, str]]]


class Indexer:
    def __init__(self, library: LibraryStore, passages: PassageStore, *,
                 embed: EmbedDocuments, model: ModelChoice, limits: Limits | None = None,
                 rescan_interval_s: float = 300.0) -> None:
        self._library = library
        self._passages = passages
        self._embed = embed
        self._model = model
        self._limits = limits or Limits()
        self._interval = rescan_interval_s
        self.events: EventHub[KnowledgeEvent] = EventHub()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._rescan: set[int] = set()
        self._idle = threading.Event()
        self._idle.set()

    # -- any thread ------------------------------------------------------------------------
    def wake(self, collection_id: int | None = None, *, rescan: bool = True) -> None:
        """Run a pass soon (``rescan``: walk the folders too, for ``collection_id`` or all)."""
        with self._lock:
            if self._closing:
                return
            if rescan:
                self._rescan.add(-1 if collection_id is None else collection_id)
            self._idle.clear()
            if self._thread is None:
                self._start()
            elif self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until a pass has nothing left to do (tests, ``hearth docs add --wait``)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            loop, wake, thread = self._loop, self._wake, self._thread
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if thread is not None:
            thread.join(timeout=10)

    def _start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            async def run() -> None:
                self._loop = asyncio.get_running_loop()
                self._wake = asyncio.Event()
                self._wake.set()
                ready.set()
                await self._serve()

            asyncio.run(run())

        self._thread = threading.Thread(target=main, name="hearth-indexer", daemon=True)
        self._thread.start()
        ready.wait(5)

    # -- the indexer's thread --------------------------------------------------------------
    async def _serve(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            if self._closing:
                break
            if not self._wake.is_set():  # the interval passed: look at the folders again
                with self._lock:
                    self._rescan.add(-1)
            self._wake.clear()
            try:
                await self._pass()
            except Exception:  # a bug must not end indexing for the session
                log.exception("indexing pass failed")
            if not self._wake.is_set():
                self._idle.set()

    async def _pass(self) -> None:
        with self._lock:
            rescan, self._rescan = self._rescan, set()
        model, why = await self._model()
        for collection in self._library.list(kind=None):
            if self._closing:
                return
            if collection.paused:
                self._progress(collection, "paused", note=why)
                continue
            if collection.folders and (-1 in rescan or collection.id in rescan):
                await self._scan(collection)
            await self._read_pending(collection, why)
            if model is not None:
                await self._embed_all(collection, model)
            self._progress(self._library.get(collection.id), "idle", note=why)

    def _paused(self, collection: CollectionInfo) -> bool:
        found = self._library.find(collection.id)
        return self._closing or found is None or found.paused

    async def _scan(self, collection: CollectionInfo) -> None:
        self._progress(collection, "scanning")
        known = self._library.known_files(collection.id)
        folders = [Path(f) for f in collection.folders]
        result = await asyncio.to_thread(scan, folders, known, lambda: self._closing)
        if result.changed:
            self._library.mark_pending(collection.id, result.changed)
        skipped = [(path, why) for path, why in result.skipped
                   if path not in known or known[path][3] != "failed"]  # new ones only
        if skipped:
            self._library.record_failed(collection.id, skipped)
            for path, why in skipped:
                self.events.publish(FileFailed(collection.name, path, why))
        if result.gone:
            by_id = {row[0]: path for path, row in known.items()}
            self._library.forget(result.gone)
            for file_id in result.gone:
                self.events.publish(FileForgotten(collection.name, by_id[file_id]))

    async def _read_pending(self, collection: CollectionInfo, why: str) -> None:
        pending = self._library.pending(collection.id)
        for done, file in enumerate(pending):
            if self._paused(collection):
                self._progress(collection, "paused", note=why)
                return
            self._progress(collection, "indexing", done, len(pending), current=file.path,
                           note=why)
            with contextlib.suppress(DocumentUnreadable):  # recorded; the pass goes on
                await self.read_file(collection, file)

    async def read_file(self, collection: CollectionInfo, file: FileInfo) -> ParsedDocument:
        """Read one file into the index now (an attachment: the caller waits for it). Raises
        ``DocumentUnreadable`` after recording it (the file is then "failed" or forgotten)."""
        path = Path(file.path)
        try:
            document, chunks = await asyncio.to_thread(self._parse, path)
        except DocumentUnreadable as exc:
            if not path.exists():  # deleted while waiting or being read: nothing to keep
                self._library.forget([file.id])
                self.events.publish(FileForgotten(collection.name, file.path))
            else:
                self._library.mark_failed(file.id, exc.user_message)
            self.events.publish(FileFailed(collection.name, file.path, exc.user_message))
            raise
        if self._passages.replace(file.id, collection.id, document, chunks):
            self.events.publish(FileIndexed(collection.name, file.path, len(chunks),
                                            document.pages, document.note))
            after = _stat(path)
            if file.mtime_ns and after is not None and after != (file.size, file.mtime_ns):
                # Changed while it was being read: read it again on the next pass.
                self._library.mark_pending(collection.id, [(file.path, *after)])
                self.wake(collection.id, rescan=False)
        return document

    def _parse(self, path: Path) -> tuple[ParsedDocument, list[Chunk]]:
        document = parse_document(path, self._limits)
        return document, chunk_sections(document.sections)

    async def _embed_all(self, collection: CollectionInfo, model: str) -> None:
        while not self._paused(collection):
            batch = self._passages.unembedded(collection.id, model, EMBED_BATCH)
            if not batch:
                return
            info = self._library.get(collection.id)
            self._progress(info, "embedding")
            texts = [embedding_text(text, heading, title) for _, text, heading, title in batch]
            try:
                vectors = await self._embed(texts)
            except BackendError as exc:  # the model went away or failed: next pass retries
                self._progress(info, "idle", note=f"Vectors are paused: {exc.user_message}")
                return
            self._passages.set_vectors(collection.id, model, [
                (chunk_id, np.asarray(v, dtype=np.float32))
                for (chunk_id, *_), v in zip(batch, vectors, strict=True)])

    def _progress(self, collection: CollectionInfo, state: str, done: int = 0,
                  total: int = 0, *, current: str | None = None, note: str = "") -> None:
        if state in ("scanning", "paused", "idle"):
            done, total = collection.indexed + collection.failed, collection.files
        self.events.publish(IndexProgress(collection.name, state, done, total,  # type: ignore[arg-type]
                                          collection.embedded, collection.chunks, current, note))


def embedding_text(text: str, heading: str | None, title: str | None) -> str:
    """What is embedded for a chunk: its document's title and heading first, so a passage
    that never names its subject ("It returns None when…") still lands near questions about
    it."""
    context = " — ".join(p for p in (title, heading) if p)
    return f"{context}\n{text}" if context else text


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
