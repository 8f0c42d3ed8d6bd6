"""The engine thread: the one owner of the llama.cpp model, context and samplers.

Everyone else talks to it through ``submit`` (a generation), ``call`` (load/unload, run on this
thread) and ``Job.cancelled``. Each loop iteration is one decode step: cancelled requests leave,
waiting requests join free slots (first in, first out), then one batch holds the next token of
every generating slot plus prompt tokens of slots still prefilling. Results go back through
each job's sink as values; this thread never touches Qt or asyncio objects directly.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from backend.engine.chains import sampler_for
from backend.engine.failures import failure_for
from backend.engine.image_feed import ImageFeeder
from backend.engine.image_prompt import ImageSpans
from backend.engine.prefix_sharing import share_prefix
from backend.engine.slot import Job, Slot, choose_slot, common_prefix_length
from backend.engine.speculator import Speculator
from backend.engine.state import LoadedState, StalePrompt
from backend.engine.step_batch import fill_batch, on_token
from backend.engine.step_costs import MIN_PREFILL_CHUNK, StepCosts
from backend.engine.types import SpeculationParams
from backend.errors import BackendError, ModelNotLoaded

log = logging.getLogger(__name__)
T = TypeVar("T")

# While some slot is generating, a prompt is fed in chunks sized so that one step takes about
# this long: a long prompt arriving never freezes the streams already running. The chunk
# follows the measured prompt speed (a tiny model on a GPU takes thousands of tokens in 50 ms,
# a big one on two CPU cores a few dozen).
PREFILL_STEP_BUDGET_S = 0.05
SOLO_PREFILL_STEP_S = 0.5  # a step reading a prompt while no stream waits (see _prompt_room)
MAX_HANDOFF_WAIT_S = 0.002  # longest a step waits for consumers to take their events


class Scheduler:
    def __init__(self, flush_events: Callable[[float], None] = lambda wait_s: None) -> None:
        # Wakes the consumers of deferred events (delivery.py), waiting up to the given
        # seconds for them to take their events: called on the engine thread when a decode
        # returns and before the thread waits for work.
        self._flush_events = flush_events
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._calls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = collections.deque()
        self._waiting: collections.deque[Job] = collections.deque()
        self._closing = False
        self.state: LoadedState | None = None  # engine thread only
        self._costs = StepCosts()  # engine thread only
        self._speculator = Speculator()  # engine thread only
        self.images = ImageFeeder()  # engine thread only
        self._thread = threading.Thread(target=self._run, name="hearth-engine", daemon=True)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------
    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the engine thread between decode steps."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._wake:
            if self._closing:
                future.set_exception(RuntimeError("the engine is shut down"))
                return future
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def submit(self, job: Job) -> None:
        with self._wake:
            self._waiting.append(job)
            self._wake.notify()

    def poke(self) -> None:
        """Wake the loop, e.g. after a cancel flag was set."""
        with self._wake:
            self._wake.notify()

    def close(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    # -- engine thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                if not (self._closing or self._calls or self._has_work_locked()):
                    self._flush_events(0.0)  # idle now: nothing deferred may wait for a decode
                while not (self._closing or self._calls or self._has_work_locked()):
                    self._wake.wait()
                if self._closing:
                    break
                calls = list(self._calls)
                self._calls.clear()
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:
                        future.set_exception(exc)
            try:
                self._step()
            except Exception:  # a bug here must not kill the only engine thread
                log.exception("engine step failed")
                self._fail_all(BackendError("The engine hit an internal error; the request "
                                            "was stopped. Try again, or reload the model."))
        self._shutdown()

    def _has_work_locked(self) -> bool:
        if self._waiting:
            return True
        state = self.state
        return state is not None and any(slot.busy for slot in state.slots)

    def _step(self) -> None:
        state = self.state
        if state is None:
            with self._wake:
                waiting = list(self._waiting)
                self._waiting.clear()
            for job in waiting:
                job.sink(ModelNotLoaded("No model is loaded. Load a model first, then send "
                                        "the message again."))
            return
        for slot in state.slots:
            if slot.job is not None and slot.job.cancelled:
                slot.finish("cancelled")
        self._admit(state)
        self._decode_one_step(state)

    def _admit(self, state: LoadedState) -> None:
        if not self._waiting:  # the common step: nothing new (a stale read waits one step)
            return
        while True:
            free = [slot for slot in state.slots if not slot.busy]
            if not free:
                return
            with self._wake:
                if not self._waiting:
                    return
                job = self._waiting.popleft()
            if job.cancelled:
                slot = free[0]
                slot.job = job
                slot.finish("cancelled")
                continue
            try:
                self._start(state, job, free)
            except Exception as exc:  # this request's problem alone: it ends, others go on
                self._refuse(job, exc)

    def _start(self, state: LoadedState, job: Job, free: list[Slot]) -> None:
        prepared = job.prepared
        if prepared is None or prepared.state is not state:
            # Prepared for a model that was unloaded or replaced since: prepare it again.
            raise StalePrompt()
        prompt, dropped = prepared.tokens, prepared.dropped
        images = prepared.images if isinstance(prepared.images, ImageSpans) else ImageSpans()
        request = job.request
        if images.spans:  # drafts can't come from (or run into) image positions
            request = dataclasses.replace(request, speculation=SpeculationParams(mode="off"))
        slot = choose_slot(free, prompt)
        try:
            sampler = sampler_for(state, slot, request)
            # A cached prefix ending inside an image is cut back to its start: an image is
            # read whole or not at all.
            reused = images.retreat(min(common_prefix_length(slot.cached, prompt),
                                        len(prompt) - 1))
            if reused < len(slot.cached) and not state.ctx.seq_remove(slot.seq_id, reused):
                # Sliding-window caches can't drop a suffix: start this sequence afresh.
                state.ctx.seq_remove(slot.seq_id, -1, -1)
                reused = 0
            reused = share_prefix(state, slot, prompt, reused, self._costs.per_prompt_token,
                                  images.retreat)
        except BaseException:
            # Whatever the slot's cache holds now is not known for sure: start it afresh.
            state.ctx.seq_remove(slot.seq_id, -1, -1)
            slot.cached = []
            raise
        slot.start(job, prompt, reused, sampler, dropped, images)
        self._speculator.begin(state, slot, request)

    def _refuse(self, job: Job, exc: Exception) -> None:
        """End a request that could not start; always answered, so it leaves every queue."""
        if isinstance(exc, StalePrompt):
            job.sink(exc)
            return
        try:
            job.sink(failure_for(job.request.request_id, exc, "starting"))
        except Exception:  # its consumer's loop is gone: nobody is waiting for the answer
            log.debug("could not answer request %s", job.request.request_id, exc_info=True)

    def _decode_one_step(self, state: LoadedState) -> None:
        entered = time.perf_counter()
        ctx = state.ctx
        self.images.feed(state, self._fail_slot)  # an image reached: its own decode call
        ctx.batch_clear()
        generating = [s for s in state.slots if s.busy and s.pending_token is not None]
        drafts = self._speculator.propose(state, generating, self._costs)
        batch = fill_batch(state, generating, drafts, self._prompt_room(state, generating))
        if ctx.n_in_batch == 0:
            return
        if batch.n_prompt:
            # A step with prompt tokens takes long: deferred text must not wait for it (and a
            # consumer's few hundred µs hardly slow it).
            self._flush_events(0.0)
        started = time.perf_counter()
        try:
            ctx.decode()
        except BackendError as exc:  # the whole batch failed: every request in it ends
            for slot in state.slots:
                if slot.busy:
                    self._fail_slot(state, slot, exc)
            return
        now = time.perf_counter()
        # The previous step's deferred text goes out now, while this thread samples and the
        # other cores are idle (delivery.py). Waiting for the consumers costs at most a
        # twentieth of a step: on a GPU that is hidden behind the kernels still running.
        self._flush_events(min(MAX_HANDOFF_WAIT_S, 0.05 * self._costs.decode_step))
        elapsed = now - started
        self._speculator.learn_step(elapsed, self._costs, batch.n_generating, batch.n_prompt,
                                    batch.n_draft)
        self._costs.learn(elapsed, batch.n_generating, batch.n_prompt, batch.n_draft)
        for slot in batch.fed:
            if slot.job is not None and slot.job.request.report_progress:
                slot.report_progress()
        for slot in batch.sampling:
            if slot.job is None:
                continue
            assert slot.sampler is not None
            try:
                if slot.draft:
                    tokens = self._speculator.check(state, slot)
                else:
                    tokens = [slot.sampler.sample(ctx, slot.logits_index)]
                if slot.spec is not None:
                    slot.spec.observe(tokens)
                for i, token in enumerate(tokens):
                    on_token(state, slot, token, now)
                    if slot.job is None:
                        break
                    if i < len(tokens) - 1:
                        slot.pending_token = None  # an accepted guess: decoded already
            except Exception as exc:  # this slot's request ends; the batch's others go on
                self._fail_slot(state, slot, failure_for(slot.job.request.request_id, exc,
                                                         "sampling its reply"))
        if batch.n_generating and not batch.n_prompt and not batch.n_draft:
            self._costs.learn_overhead(time.perf_counter() - entered - elapsed)

    def _prompt_room(self, state: LoadedState, generating: list[Slot]) -> int:
        """Prompt tokens this step may read. While streams run, a chunk sized so the step
        takes about ``PREFILL_STEP_BUDGET_S``. With none, whole micro-batches, as many as
        fit ``SOLO_PREFILL_STEP_S`` (up to the batch, 2,048 tokens): fewer llama_decode calls
        where tokens are cheap (a GPU), and on a CPU a step no longer than one micro-batch,
        so a request arriving meanwhile waits no longer than it did to join."""
        per_token = self._costs.per_prompt_token
        if generating:
            return max(MIN_PREFILL_CHUNK, int(PREFILL_STEP_BUDGET_S / per_token))
        ubatch = state.ctx.config.n_ubatch
        fits = int(SOLO_PREFILL_STEP_S / per_token) // ubatch * ubatch
        return min(state.ctx.batch_capacity, max(ubatch, fits))

    def _fail_slot(self, state: LoadedState, slot: Slot, error: BackendError) -> None:
        """End the slot's request with ``error`` and free the slot, whatever state it was in."""
        state.ctx.seq_remove(slot.seq_id, -1, -1)
        slot.cached = []
        slot.pending_token = None
        slot.draft, slot.draft_rows = [], []
        try:
            slot.finish("error", error)
        except Exception:
            log.exception("could not end request in slot %d cleanly", slot.seq_id)
            slot.abandon()

    def _fail_all(self, error: BackendError) -> None:
        state = self.state
        if state is not None:
            for slot in state.slots:
                if slot.busy:
                    self._fail_slot(state, slot, error)

    def cancel_all(self) -> None:
        """Engine thread: end every request (before an unload)."""
        state = self.state
        if state is not None:
            for slot in state.slots:
                if slot.busy:
                    slot.finish("cancelled")
        with self._wake:
            waiting = list(self._waiting)
            self._waiting.clear()
        for job in waiting:
            job.sink(ModelNotLoaded("The model was unloaded before this request started. "
                                    "Load a model and send it again."))

    def forget_costs(self) -> None:
        """Engine thread: a model was loaded; what was learnt about the last one is void."""
        self._costs = StepCosts()
        self._speculator.reset()
        self.images.cache.clear()

    def drop_graph_samplers(self) -> None:
        """Engine thread: free the chains kept attached to the context (before it goes)."""
        if self.state is not None:
            for slot in self.state.slots:
                slot.drop_graph_sampler()

    def _shutdown(self) -> None:
        self.cancel_all()
        self.drop_graph_samplers()
        state, self.state = self.state, None
        if state is not None:
            state.close()
