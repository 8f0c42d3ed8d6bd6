"""``Embeddings``: embedding requests, beside the chats, on the one engine thread.

Embedding models are opened on first use and kept (at most ``MAX_OPEN``, the least recently
used closed first); they never replace the chat model. A model with requests in flight is
never closed to make room: another request's model must not fail them, so a third model
opened while two are busy is one too many only until they finish. An embedding request is
tokenized on a preparation thread, then queued; one *pump* decodes the queue a batch per
``Scheduler.call``, first in first out, and queues itself again while work is left. So:

- however many requests arrive, the engine runs at most one embedding decode between two decode
  steps of the chats;
- requests for the same model share decodes (a hundred one-input requests take a few decodes,
  as llama-server's slots would);
- a batch follows the last without a round trip through the caller's event loop;
- while chats are streaming (``streaming()``), a decode takes only about
  ``STREAMING_DECODE_S`` of input, so a stream's next token waits one short decode, not a
  2,048-token one. A causal model's input longer than that is decoded in parts, its cache
  kept between them (``EmbeddingModel.decode_part``); a non-causal model's input is always
  decoded whole (llama.cpp needs it in one micro-batch), so one such input is the floor.

Threading: ``embed`` runs on the caller's loop (any loop, any thread); ``_pump``,
``_opened`` and ``close_all`` run on the engine thread; ``_queue`` and ``_pumping`` are shared
under ``_lock``. A request's future is completed on the engine thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.engine.embedder import MAX_SEQUENCES, EmbeddingInfo, EmbeddingModel
from backend.engine.failures import failure_for
from backend.errors import BackendError, InvalidRequest, ModelNotLoaded

MAX_OPEN = 2
MAX_INPUTS = 4096  # per request; each becomes a sequence of some decode
# A decode beside streaming chats lasts about this long: the scheduler's budget for a prompt
# chunk read while streams wait (scheduler.PREFILL_STEP_BUDGET_S), so an embedding batch delays
# a chat token no more than a long prompt arriving would.
STREAMING_DECODE_S = 0.05


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]  # L2-normalised, one per input, in order
    prompt_tokens: int
    info: EmbeddingInfo


Call = Callable[[Callable[[], Any]], "concurrent.futures.Future[Any]"]


@dataclass(eq=False)
class _Request:
    model: EmbeddingModel
    tokenized: list[list[int]]
    future: concurrent.futures.Future[list[list[float]]]
    vectors: list[list[float]] = field(default_factory=list)
    taken: int = 0  # inputs handed to a decode (engine thread, under the lock)
    # An input being decoded in parts (beside streaming chats): the tokens of input ``taken``
    # decoded so far, and each part's (tokens, pooled vector). Engine thread only.
    part_at: int = 0
    parts: list[tuple[int, Any]] = field(default_factory=list)

    def settled(self) -> bool:
        return self.future.done()  # finished, failed, or cancelled by its caller


class Embeddings:
    def __init__(self, call: Call, pool: concurrent.futures.Executor,
                 streaming: Callable[[], bool] = lambda: False) -> None:
        self._call = call  # runs a function on the engine thread between decode steps
        self._pool = pool
        self._streaming = streaming  # engine thread: whether chats are generating
        self._open: collections.OrderedDict[Path, EmbeddingModel] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._queue: collections.deque[_Request] = collections.deque()
        self._pumping = False  # a _pump is queued on the engine thread or running
        # Requests in flight per open model (from ``_acquire`` to their end), under _lock: a
        # model with any is not closed to make room for another.
        self._users: collections.Counter[EmbeddingModel] = collections.Counter()

    async def embed(self, model_id: str, path: Path, inputs: Sequence[str | Sequence[int]], *,
                    truncate: bool = True, n_threads: int, n_gpu_layers: int = 0
                    ) -> EmbeddingResult:
        if not inputs:
            raise InvalidRequest("There is nothing to embed: send at least one input.")
        if len(inputs) > MAX_INPUTS:
            raise InvalidRequest(f"Send at most {MAX_INPUTS:,} inputs per request.")
        opening = self._call(lambda: self._acquire(model_id, path, n_threads, n_gpu_layers))
        try:
            model = await asyncio.wrap_future(opening)
        except asyncio.CancelledError:
            # Too late to stop it if the engine thread already opened it: hand it back then.
            opening.add_done_callback(self._release_opened)
            raise
        try:
            return await self._embed(model, inputs, truncate)
        finally:
            self._release(model)

    async def _embed(self, model: EmbeddingModel, inputs: Sequence[str | Sequence[int]],
                     truncate: bool) -> EmbeddingResult:
        loop = asyncio.get_running_loop()
        try:
            tokenized = await loop.run_in_executor(self._pool, model.tokenize, inputs, truncate)
        except BackendError:
            raise
        except Exception as exc:
            raise failure_for("embeddings", exc, "reading the inputs") from exc
        request = _Request(model, tokenized, concurrent.futures.Future())
        with self._lock:
            self._queue.append(request)
            start = not self._pumping
            self._pumping = True
        if start:
            self._schedule_pump()
        # Cancelling this coroutine cancels the future, and the pump drops what is left of it.
        vectors = await asyncio.wrap_future(request.future)
        return EmbeddingResult(vectors, sum(map(len, tokenized)), model.info)

    def _schedule_pump(self) -> None:
        self._call(self._pump).add_done_callback(self._pump_refused)

    def _pump_refused(self, future: concurrent.futures.Future[Any]) -> None:
        # The scheduler refuses calls once it is shutting down: nothing will decode the rest.
        if not future.cancelled() and future.exception() is not None:
            self._fail_queued(ModelNotLoaded("The engine shut down before the embeddings "
                                             "were computed."))

    # -- engine thread ---------------------------------------------------------------------
    def _pump(self) -> None:
        """One decode of the queue's next inputs; queues itself again while work is left."""
        with self._lock:
            picks = self._next_batch()
        if picks:
            self._decode(picks)
        with self._lock:
            while self._queue and self._queue[0].settled():
                self._queue.popleft()
            again = self._pumping = bool(self._queue)
        if again:
            self._schedule_pump()

    def _next_batch(self) -> list[tuple[_Request, int]]:
        """Under the lock: (request, count) for the inputs of the next decode, all of the head
        request's model, in order."""
        while self._queue and self._queue[0].settled():
            self._queue.popleft()
        if not self._queue:
            return []
        head = self._queue[0]
        model = head.model
        budget = model.budget_for(STREAMING_DECODE_S) if self._streaming() else None
        if head.part_at or (budget is not None and model.splits and
                            len(head.tokenized[head.taken]) > budget):
            return [(head, 0)]  # the next part of the head's next input (_decode_part)
        lengths: list[int] = []
        owners: list[tuple[_Request, int]] = []
        for request in self._queue:
            if request.model is not model or request.settled():
                continue
            left = [len(t) for t in request.tokenized[request.taken:
                                                      request.taken + MAX_SEQUENCES]]
            owners.append((request, len(left)))
            lengths += left
            if len(lengths) >= MAX_SEQUENCES:
                break  # one decode takes no more
        count = model.take(lengths, budget)
        picks = []
        for request, available in owners:
            if count <= 0:
                break
            n = min(available, count)
            if n:
                picks.append((request, n))
                count -= n
        return picks

    def _decode(self, picks: list[tuple[_Request, int]]) -> None:
        if picks[0][1] == 0:
            self._decode_part(picks[0][0])
            return
        model = picks[0][0].model
        sequences = []
        for request, n in picks:
            sequences += request.tokenized[request.taken:request.taken + n]
            request.taken += n
        try:
            vectors = model.decode(sequences)
        except Exception as exc:  # this batch's requests fail; the queue goes on
            error = failure_for("embeddings", exc, "computing the embeddings")
            for request, _ in picks:
                _settle(request.future, error=error)
            return
        at = 0
        for request, n in picks:
            request.vectors += vectors[at:at + n]
            at += n
            if request.taken == len(request.tokenized):
                _settle(request.future, result=request.vectors)

    def _decode_part(self, request: _Request) -> None:
        """One part of the request's next input: about ``STREAMING_DECODE_S`` of it while chats
        stream, the rest at once when they stopped."""
        model = request.model
        tokens = request.tokenized[request.taken]
        budget = model.budget_for(STREAMING_DECODE_S) if self._streaming() else len(tokens)
        end = min(len(tokens), request.part_at + budget)
        try:
            pooled = model.decode_part(tokens, request.part_at, end)
        except Exception as exc:
            _settle(request.future, error=failure_for("embeddings", exc,
                                                      "computing the embeddings"))
            return
        request.parts.append((end - request.part_at, pooled))
        request.part_at = end
        if end < len(tokens):
            return
        with self._lock:
            request.taken += 1
        request.vectors.append(model.join_parts(request.parts))
        request.part_at, request.parts = 0, []
        if request.taken == len(request.tokenized):
            _settle(request.future, result=request.vectors)

    def _fail_queued(self, error: BaseException) -> None:
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
            self._pumping = False
        for request in queued:
            _settle(request.future, error=error)

    def _acquire(self, model_id: str, path: Path, n_threads: int, n_gpu_layers: int
                 ) -> EmbeddingModel:
        """Engine thread: the model for a request, counted in use until ``_release``."""
        model = self._opened(model_id, path, n_threads, n_gpu_layers)
        with self._lock:
            self._users[model] += 1
        return model

    def _release(self, model: EmbeddingModel) -> None:
        """Any thread: a request is done with ``model``; close models beyond ``MAX_OPEN``
        that were kept open only for requests like it."""
        with self._lock:
            self._users[model] -= 1
            if self._users[model] <= 0:
                del self._users[model]
            over = len(self._open) > MAX_OPEN
        if over:
            self._call(self._trim)  # refused at shutdown: close_all frees them then

    def _release_opened(self, future: concurrent.futures.Future[EmbeddingModel]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._release(future.result())

    def _opened(self, model_id: str, path: Path, n_threads: int,
                n_gpu_layers: int) -> EmbeddingModel:
        model = self._open.get(path)
        if model is not None:
            self._open.move_to_end(path)
            return model
        self._trim(room_for=1)
        model = EmbeddingModel(model_id, path, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        self._open[path] = model
        return model

    def _trim(self, room_for: int = 0) -> None:
        """Engine thread: close the least recently used models without requests in flight
        until at most ``MAX_OPEN - room_for`` are open (or only busy ones are left)."""
        while len(self._open) > MAX_OPEN - room_for:
            with self._lock:
                idle = next((p for p, m in self._open.items() if not self._users[m]), None)
            if idle is None:
                return  # every one is busy: one over for now, closed when it is free
            self._open.pop(idle).close()

    def close_all(self) -> None:
        """Engine thread: free every embedding model (at shutdown)."""
        self._fail_queued(ModelNotLoaded("The engine shut down before the embeddings were "
                                         "computed."))
        while self._open:
            _, model = self._open.popitem()
            model.close()


def _settle(future: concurrent.futures.Future[Any], *, result: Any = None,
            error: BaseException | None = None) -> None:
    """Complete ``future`` unless its caller cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by its caller: nobody waits for it
