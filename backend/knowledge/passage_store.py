"""Chunks: written a whole file at a time, found by full text (FTS5 BM25) or fetched by id.

A file's chunks are replaced in one transaction with its new state, so a reader sees either
the old passages or the new ones, never half of each, and a crash mid-file leaves it
"pending" with its old passages (it is read again on the next start).

Threading: every method is one short transaction or read on the shared ``Database``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from backend.knowledge.chunking import Chunk
from backend.knowledge.database import Database, now
from backend.knowledge.documents import ParsedDocument
from backend.knowledge.records import Passage

# FTS5 treats these as operators; a question's words are quoted one by one instead.
_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_WORDS = 64
# The words every English question is made of ("how do I…", "what is the…"): matching them
# ranks passages by how chatty they are. BM25's IDF weighs them low but, OR-ed with the real
# terms, they still pull in and reorder passages sharing no term with the question. Left out
# of the query unless nothing else is left.
STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
    "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on",
    "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same",
    "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves", "get", "use", "used", "using", "want"
])


class PassageStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        # collection id → a counter bumped on every change to its chunks or vectors, so the
        # vector index knows when its copy is stale without reading the table.
        self.generations: dict[int, int] = {}

    def _changed(self, collection_id: int) -> None:
        self.generations[collection_id] = self.generations.get(collection_id, 0) + 1

    def replace(self, file_id: int, collection_id: int, document: ParsedDocument,
                chunks: Sequence[Chunk]) -> bool:
        """The file's passages become ``chunks``; False if the file was forgotten meanwhile
        (its folder removed, the collection deleted): nothing is written then."""
        with self._db.transaction() as db:
            if not db.execute("SELECT 1 FROM files WHERE id = ?", (file_id,)).fetchone():
                return False
            db.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            db.executemany(
                "INSERT INTO chunks (file_id, collection_id, ordinal, text, heading, page, "
                "start, end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(file_id, collection_id, c.ordinal, c.text, c.heading, c.page, c.start, c.end)
                 for c in chunks])
            db.execute("UPDATE files SET state = 'indexed', error = NULL, note = ?, kind = ?, "
                       "title = ?, pages = ?, chars = ?, indexed_at = ? WHERE id = ?",
                       (document.note or None, document.kind, document.title, document.pages,
                        document.chars, now(), file_id))
        self._changed(collection_id)
        return True

    # -- vectors ---------------------------------------------------------------------------
    def unembedded(self, collection_id: int, model: str, limit: int
                   ) -> list[tuple[int, str, str | None, str | None]]:
        """(chunk id, text, heading, file title) of chunks without a vector from ``model``;
        vectors from another model are dropped first (they can't be compared)."""
        with self._db.transaction() as db:
            stale = db.execute("UPDATE chunks SET vector = NULL, vector_model = NULL WHERE "
                               "collection_id = ? AND vector_model IS NOT NULL AND "
                               "vector_model != ?", (collection_id, model)).rowcount
            rows = db.execute(
                "SELECT c.id, c.text, c.heading, f.title FROM chunks AS c JOIN files AS f ON "
                "f.id = c.file_id WHERE c.collection_id = ? AND c.vector IS NULL "
                "ORDER BY c.id LIMIT ?", (collection_id, limit)).fetchall()
        if stale:
            self._changed(collection_id)
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def set_vectors(self, collection_id: int, model: str,
                    vectors: Sequence[tuple[int, np.ndarray]]) -> None:
        """Chunks replaced meanwhile (their file changed) are simply not found: ids are
        never reused."""
        with self._db.transaction() as db:
            db.executemany("UPDATE chunks SET vector = ?, vector_model = ? WHERE id = ?",
                           [(v.astype(np.float32).tobytes(), model, i) for i, v in vectors])
        self._changed(collection_id)

    def vectors(self, collection_id: int, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, float32 matrix with one row per chunk) of ``model``'s vectors."""
        with self._db.read() as db:
            rows = db.execute("SELECT id, vector FROM chunks WHERE collection_id = ? AND "
                              "vector_model = ? AND vector IS NOT NULL",
                              (collection_id, model)).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return ids, matrix.reshape(len(rows), -1)

    # -- reading ---------------------------------------------------------------------------
    def full_text(self, collection_ids: Sequence[int], query: str, limit: int
                  ) -> list[int]:
        """Chunk ids best first by BM25 over text and heading (any of the query's words)."""
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
        words = ([w for w in words if w not in STOPWORDS] or words)[:_MAX_QUERY_WORDS]
        if not words or not collection_ids:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        marks = ",".join("?" * len(collection_ids))
        with self._db.read() as db:
            rows = db.execute(
                f"SELECT c.id FROM chunks_fts JOIN chunks AS c ON c.id = chunks_fts.rowid "
                f"WHERE chunks_fts MATCH ? AND c.collection_id IN ({marks}) "
                f"ORDER BY bm25(chunks_fts, 1.0, 2.0) LIMIT ?",
                (match, *collection_ids, limit)).fetchall()
        return [r[0] for r in rows]

    def passages(self, chunk_ids: Sequence[int]) -> list[Passage]:
        """The chunks, in the order asked (ids no longer there are left out)."""
        if not chunk_ids:
            return []
        marks = ",".join("?" * len(chunk_ids))
        with self._db.read() as db:
            rows = db.execute(
                f"SELECT c.id, c.file_id, c.text, c.page, c.heading, c.start, c.end, f.path, "
                f"f.title, k.name FROM chunks AS c JOIN files AS f ON f.id = c.file_id "
                f"JOIN collections AS k ON k.id = c.collection_id WHERE c.id IN ({marks})",
                list(chunk_ids)).fetchall()
        found = {r[0]: Passage(r[0], r[1], r[9], r[7], r[8] or "", r[2], r[3], r[4], r[5], r[6])
                 for r in rows}
        return [found[i] for i in chunk_ids if i in found]

    def document_chunks(self, file_id: int) -> list[Passage]:
        """Every chunk of one file, in order (to put the whole document back together)."""
        with self._db.read() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM chunks WHERE file_id = ? ORDER BY ordinal", (file_id,))]
        return self.passages(ids)
