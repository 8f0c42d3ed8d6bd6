"""One sequence of the shared llama.cpp context, and the request it is serving.

Runs on the engine thread only. A slot outlives its requests: ``cached`` remembers which tokens
its KV cache holds, so the next request that shares a prefix (the next turn of the same chat)
decodes only what is new.
"""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backend.engine.delivery import EventSink
from backend.engine.image_prompt import ImageSpans
from backend.engine.prepared import PreparedPrompt
from backend.engine.sampler import NativeSampler
from backend.engine.stop_strings import StopMatcher
from backend.engine.types import (
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    PromptProgress,
    SamplingParams,
    TextDelta,
    Usage,
)
from backend.errors import BackendError

if TYPE_CHECKING:
    from backend.engine.speculation import RequestSpeculation

# A request goes to the slot whose cache it continues for at least this fraction.
SLOT_SIMILARITY = 0.5
NO_IMAGES = ImageSpans()


@dataclass
class Job:
    """A request on its way through the engine. ``cancelled`` is set from any thread."""

    request: GenerationRequest
    sink: EventSink
    submitted_at: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    prepared: PreparedPrompt | None = None  # set before the job is submitted


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Slot:
    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.cached: list[int] = []  # tokens whose keys/values are in the cache, in order
        self.last_used = 0.0
        self.job: Job | None = None
        # A sampler chain attached to the context for this sequence (backend sampling) is kept
        # after its request: attaching or detaching one makes llama.cpp re-reserve its graph
        # (~13 ms on an H200, all of a short reply's time to first token), and the next
        # request usually samples the same way. ``graph_key`` says how it samples.
        self.graph_sampler: NativeSampler | None = None
        self.graph_key: SamplingParams | None = None
        self._reset_request_state()

    def _reset_request_state(self) -> None:
        self.prompt: list[int] = []
        self.n_fed = 0  # prompt tokens already in the cache (reused or decoded)
        self.cached_prompt_tokens = 0
        self.messages_dropped = 0
        self.sampler: NativeSampler | None = None
        self.stops = StopMatcher(())
        self.stop_hit = False
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending_token: int | None = None  # sampled, not yet decoded
        self.logits_index = -1  # where this slot's logits are in the current batch
        self.n_generated = 0
        self.n_deltas = 0  # text events sent
        self.max_tokens: int | None = None
        self.t_first = 0.0
        self.t_last = 0.0
        # Speculation (speculator.py): the request's state, this step's guesses after its
        # next token and where their logits are, and the totals its reply stats show.
        self.spec: RequestSpeculation | None = None
        self.draft: list[int] = []
        self.draft_rows: list[int] = []
        self.n_drafted = 0
        self.n_accepted = 0
        self.images = NO_IMAGES  # where the prompt's images are (image_prompt.py)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    @property
    def prefilling(self) -> bool:
        return self.job is not None and self.n_fed < len(self.prompt)

    def start(self, job: Job, prompt: list[int], reused: int, sampler: NativeSampler,
              messages_dropped: int, images: ImageSpans = NO_IMAGES) -> None:
        self._reset_request_state()
        self.images = images
        self.job = job
        self.prompt = prompt
        self.n_fed = reused
        self.cached_prompt_tokens = reused
        self.cached = prompt[:reused]
        self.sampler = sampler
        self.stops = StopMatcher(job.request.stop)
        self.max_tokens = job.request.max_tokens
        self.messages_dropped = messages_dropped
        self.report_progress()

    def report_progress(self) -> None:
        """Tell a request that asked how much of its prompt is read (not deferred: the front
        end shows it while nothing else arrives)."""
        assert self.job is not None
        if self.job.request.report_progress:
            self.emit(PromptProgress(self.job.request.request_id, self.n_fed, len(self.prompt)))

    def emit(self, event: GenerationEvent | BaseException, *, defer: bool = False) -> None:
        assert self.job is not None
        try:
            self.job.sink(event, defer=defer)
        except RuntimeError:  # the consumer's event loop is gone: nobody is listening
            self.job.cancelled = True

    def finish(self, reason: FinishReason, error: BackendError | None = None) -> None:
        """Flush held-back text, report usage, and free the request's sampler."""
        assert self.job is not None
        if reason in ("stop", "length") and not self.stop_hit:
            # Text held back because it might have begun a stop string is the reply's after all.
            text, hit = "", False
            tail = self.utf8.decode(b"", final=True)
            if tail:
                text, hit = self.stops.feed(tail)
            if not hit:
                text += self.stops.flush()
            if text:
                self.emit_text(text)
        now = time.perf_counter()
        ttft = (self.t_first - self.job.submitted_at) if self.n_generated else 0.0
        span = self.t_last - self.t_first
        tps = (self.n_generated - 1) / span if self.n_generated > 1 and span > 0 else 0.0
        usage = Usage(
            prompt_tokens=len(self.prompt),
            cached_prompt_tokens=self.cached_prompt_tokens,
            completion_tokens=self.n_generated,
            time_to_first_token_s=ttft,
            decode_tokens_per_s=tps,
            messages_dropped=self.messages_dropped,
            draft_tokens=self.n_drafted,
            draft_accepted=self.n_accepted,
        )
        self.emit(Finished(self.job.request.request_id, reason, usage, error))
        if self.sampler is not None and self.sampler is not self.graph_sampler:
            self.sampler.close()
        self.job = None
        self.last_used = now
        self._reset_request_state()

    def abandon(self) -> None:
        """Free the slot without a word to its consumer (it could not be told: see
        ``Scheduler._fail_slot``)."""
        if self.sampler is not None and self.sampler is not self.graph_sampler:
            self.sampler.close()
        self.job = None
        self._reset_request_state()

    def drop_graph_sampler(self) -> None:
        """Detach and free the kept in-graph chain (a grammar request, an unload)."""
        if self.graph_sampler is not None:
            self.graph_sampler.close()
            self.graph_sampler = None
            self.graph_key = None

    def emit_text(self, text: str) -> None:
        assert self.job is not None
        # After the first piece (time to first token), text may wait for the next decode to
        # return before its consumer is woken: see delivery.py.
        self.n_deltas += 1
        self.emit(TextDelta(self.job.request.request_id, text), defer=self.n_deltas > 1)


def choose_slot(free: list[Slot], prompt: list[int]) -> Slot:
    """The free slot holding this conversation, else the least recently used one.

    A slot "holds" the conversation when the prompt continues most of what it has cached
    (llama-server's similarity rule); a shared system prompt alone does not count, or every
    new chat would evict the cache of the chat that happened to share its first lines.
    """
    def reuse(slot: Slot) -> float:
        if not slot.cached:
            return 0.0
        return common_prefix_length(slot.cached, prompt) / len(slot.cached)

    best = max(free, key=reuse)
    if reuse(best) >= SLOT_SIMILARITY:
        return best
    return min(free, key=lambda s: s.last_used)  # empty slots (never used) come first
