"""``Embeddings``: embedding requests, beside the chats, on the one engine thread.

Embedding models are opened on first use and kept (at most ``MAX_OPEN``, the least recently
used closed first); they never replace the chat model. An embedding request is tokenized on a
preparation thread, then decoded one batch per ``Scheduler.call``: between two decode steps of
the chats, so a running stream waits at most one embedding batch, however many inputs arrive
(a batch is ``MAX_BATCH_TOKENS`` tokens at most).

Threading: ``embed`` runs on the caller's loop; native work happens on the engine thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backend.engine.embedder import EmbeddingInfo, EmbeddingModel
from backend.engine.failures import failure_for
from backend.errors import BackendError, InvalidRequest

T = TypeVar("T")
MAX_OPEN = 2
MAX_INPUTS = 4096  # per request; each becomes a sequence of some decode


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]  # L2-normalised, one per input, in order
    prompt_tokens: int
    info: EmbeddingInfo


Call = Callable[[Callable[[], Any]], "concurrent.futures.Future[Any]"]


class Embeddings:
    def __init__(self, call: Call, pool: concurrent.futures.Executor) -> None:
        self._call = call  # runs a function on the engine thread between decode steps
        self._pool = pool
        self._open: collections.OrderedDict[Path, EmbeddingModel] = collections.OrderedDict()

    async def _on_engine(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._call(fn))  # type: ignore[no-any-return]

    async def embed(self, model_id: str, path: Path, inputs: Sequence[str | Sequence[int]], *,
                    truncate: bool = True, n_threads: int, n_gpu_layers: int = 0
                    ) -> EmbeddingResult:
        if not inputs:
            raise InvalidRequest("There is nothing to embed: send at least one input.")
        if len(inputs) > MAX_INPUTS:
            raise InvalidRequest(f"Send at most {MAX_INPUTS:,} inputs per request.")
        model = await self._on_engine(lambda: self._opened(model_id, path, n_threads,
                                                            n_gpu_layers))
        loop = asyncio.get_running_loop()
        try:
            tokenized = await loop.run_in_executor(self._pool, model.tokenize, inputs, truncate)
        except BackendError:
            raise
        except Exception as exc:
            raise failure_for("embeddings", exc, "reading the inputs") from exc
        vectors: list[list[float]] = [[] for _ in inputs]
        for group in model.batches(tokenized):
            sequences = [tokenized[i] for i in group]
            done = await self._on_engine(lambda s=sequences: model.decode(s))
            for index, vector in zip(group, done, strict=True):
                vectors[index] = vector
        return EmbeddingResult(vectors, sum(map(len, tokenized)), model.info)

    # -- engine thread ---------------------------------------------------------------------
    def _opened(self, model_id: str, path: Path, n_threads: int,
                n_gpu_layers: int) -> EmbeddingModel:
        model = self._open.get(path)
        if model is not None:
            self._open.move_to_end(path)
            return model
        while len(self._open) >= MAX_OPEN:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        model = EmbeddingModel(model_id, path, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        self._open[path] = model
        return model

    def close_all(self) -> None:
        """Engine thread: free every embedding model (at shutdown)."""
        while self._open:
            _, model = self._open.popitem()
            model.close()
