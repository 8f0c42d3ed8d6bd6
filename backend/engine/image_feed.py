"""Reading a prompt's images into their sequences, between decode steps (engine thread only).

A prompt reaches an image: the projector encodes it (or the embeddings of the same image are
still remembered) and the embeddings are decoded into the request's own sequence at the
image's positions, by a llama_decode call of their own (a batch holds either token ids or
embeddings, never both). One image per scheduler step, so streams in other slots keep
stepping between images. Whatever goes wrong ends that request alone.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import numpy as np

from backend.engine.failures import failure_for
from backend.engine.image_prompt import ImageSpan
from backend.engine.slot import Slot
from backend.engine.state import LoadedState
from backend.errors import BackendError, ImageRejected

log = logging.getLogger(__name__)

# Embeddings of recently encoded images kept in memory (float32: a 576-token image for a
# 4,096-wide model is 9.4 MB): the same image in another slot, or after its conversation's
# cache was evicted, is decoded again without running the vision encoder.
EMBEDDING_CACHE_BYTES = 256 * 1024 * 1024


class EmbeddingCache:
    def __init__(self, capacity_bytes: int = EMBEDDING_CACHE_BYTES) -> None:
        self._capacity = capacity_bytes
        self._items: collections.OrderedDict[tuple[str, int], np.ndarray] = \
            collections.OrderedDict()
        self._bytes = 0
        self.hits = 0

    def get(self, digest: str, n_tokens: int) -> np.ndarray | None:
        embd = self._items.get((digest, n_tokens))
        if embd is not None:
            self._items.move_to_end((digest, n_tokens))
            self.hits += 1
        return embd

    def put(self, digest: str, n_tokens: int, embd: np.ndarray) -> None:
        if embd.nbytes > self._capacity:
            return
        key = (digest, n_tokens)
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._items[key] = embd
        self._bytes += embd.nbytes
        while self._bytes > self._capacity:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.nbytes

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


class ImageFeeder:
    """Feeds images for the scheduler; ``cache`` is emptied when another model loads."""

    def __init__(self) -> None:
        self.cache = EmbeddingCache()

    def feed(self, state: LoadedState, fail: Callable[[LoadedState, Slot, BackendError], None]
             ) -> bool:
        """Read the next image of one slot whose prompt has reached one; True if it did."""
        if state.vision is None:
            return False
        for slot in state.slots:
            if not slot.prefilling or slot.job is None:
                continue
            span = slot.images.at(slot.n_fed)
            if span is None:
                continue
            try:
                self._read(state, slot, span)
            except Exception as exc:  # this request's image: it ends, the others go on
                fail(state, slot, failure_for(slot.job.request.request_id, exc,
                                              "reading its image"))
            return True
        return False

    def _read(self, state: LoadedState, slot: Slot, span: ImageSpan) -> None:
        vision = state.vision
        assert vision is not None
        image, config = span.image, state.ctx.config
        non_causal = vision.non_causal(image)
        if non_causal and image.n_tokens > config.n_ubatch:
            # Checked when the prompt was made too; never let llama.cpp's assert abort the
            # process whatever changed since.
            raise ImageRejected(f"This image takes {image.n_tokens:,} tokens, more than the "
                                f"{config.n_ubatch:,} this model reads in one step.")
        embd = self.cache.get(image.digest, image.n_tokens)
        if embd is None:
            embd = vision.encode(image)
            self.cache.put(image.digest, image.n_tokens, embd)
        # Non-causal images go whole into one call (and so one micro-batch).
        n_batch = image.n_tokens if non_causal else config.n_batch
        next_pos = vision.decode(state.ctx.ptr, image, embd, slot.n_fed, slot.seq_id, n_batch)
        if next_pos != span.end:
            log.warning("image took positions %d..%d, expected ..%d", slot.n_fed, next_pos,
                        span.end)
        slot.cached.extend(slot.prompt[slot.n_fed:span.end])
        slot.n_fed = span.end
        if slot.job is not None and slot.job.request.report_progress:
            slot.report_progress()
