"""Hybrid retrieval: BM25 (FTS5) and vectors (cosine), fused by reciprocal rank.

Why both: BM25 finds the exact words (a function name, an error code, a rare term) that a
small embedding model blurs; vectors find a passage that says the same thing in other words.
Why reciprocal rank fusion (Cormack et al., 2009): it needs no score calibration between two
rankers whose scores mean different things, only their ranks; k = 60 is the paper's value and
what Elasticsearch and others use by default.

Vector scoring is an exact scan in numpy: the query vector against a float32 matrix per
collection, kept in memory and rebuilt only when the collection changed
(``PassageStore.generations``). Exact beats approximate at a personal library's size
(100k chunks × 384 dims is a 150 MB matrix and a ~10 ms product).

Threading: ``VectorIndex`` guards its cache with a lock; searches may run on any thread
(numpy releases the GIL in the product).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from backend.knowledge.passage_store import PassageStore

RRF_K = 60
CANDIDATES = 50  # from each ranker, before fusion


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """(id, fused score) best first: the sum over rankings of weight / (k + rank), rank from 1.
    Ties keep the order of first appearance (the earlier ranking's order wins)."""
    scores: dict[int, float] = {}
    for index, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


class VectorIndex:
    def __init__(self, passages: PassageStore) -> None:
        self._passages = passages
        self._lock = threading.Lock()
        # collection id → (generation, model, chunk ids, matrix)
        self._cache: dict[int, tuple[int, str, np.ndarray, np.ndarray]] = {}

    def _matrix(self, collection_id: int, model: str) -> tuple[np.ndarray, np.ndarray]:
        generation = self._passages.generations.get(collection_id, 0)
        with self._lock:
            cached = self._cache.get(collection_id)
            if cached and cached[0] == generation and cached[1] == model:
                return cached[2], cached[3]
        ids, matrix = self._passages.vectors(collection_id, model)
        with self._lock:
            self._cache[collection_id] = (generation, model, ids, matrix)
        return ids, matrix

    def search(self, collection_ids: Sequence[int], model: str, query: Sequence[float],
               limit: int = CANDIDATES) -> list[int]:
        """Chunk ids, most similar first (vectors are L2-normalised: dot = cosine)."""
        q = np.asarray(query, dtype=np.float32)
        best: list[tuple[float, int]] = []
        for cid in collection_ids:
            ids, matrix = self._matrix(cid, model)
            if not len(ids) or matrix.shape[1] != q.shape[0]:
                continue
            scores = matrix @ q
            top = np.argpartition(-scores, min(limit, len(scores) - 1))[:limit]
            best.extend((float(scores[i]), int(ids[i])) for i in top)
        best.sort(key=lambda pair: -pair[0])
        return [chunk for _, chunk in best[:limit]]

    def forget(self, collection_id: int) -> None:
        with self._lock:
            self._cache.pop(collection_id, None)
