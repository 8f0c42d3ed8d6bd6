"""The engine's async face: ``load``, ``unload``, ``generate``, ``cancel``.

Safe to use from any asyncio loop (the GUI's qasync loop, the API server's uvicorn loop, the
CLI's ``asyncio.run``); all native work happens on the scheduler's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from backend.engine.chat_template import select_template
from backend.engine.delivery import Mailboxes
from backend.engine.draft_model import speculation_for
from backend.engine.embeddings import Embeddings
from backend.engine.failures import failure_for
from backend.engine.model_file import check_gguf_file
from backend.engine.native import (
    ContextConfig,
    NativeContext,
    NativeModel,
    cannot_speculate,
    output_on_gpu,
)
from backend.engine.prepare import prepare_prompt
from backend.engine.prompt_tokens import PromptTokenizer
from backend.engine.scheduler import Scheduler
from backend.engine.slot import Job, Slot
from backend.engine.state import LoadedState, StalePrompt
from backend.engine.types import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    LoadedModel,
    LoadPlan,
)
from backend.engine.vision import VisionContext, check_projector_file, probe_image_tokens
from backend.errors import BackendError, InvalidRequest, ModelNotLoaded
from backend.library.local import LocalModel

# Requests prepared at once (template rendering, tokenizing). A hostile template holds one
# thread until its deadline; the others keep preparing everyone else's requests.
PREPARE_THREADS = 8
# A request whose tokens went stale (another model was loaded meanwhile) is prepared again
# this many times before it gives up.
MAX_PREPARE_ATTEMPTS = 3


def physical_cores() -> int:
    """Decode speed scales with physical cores; hyper-threads only add contention."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency; be kind anyway
        n = None
    return max(1, n or os.cpu_count() or 1)


class Engine:
    def __init__(self) -> None:
        self._mailboxes = Mailboxes()
        self._scheduler = Scheduler(self._mailboxes.flush)
        self._jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._prepare_pool = concurrent.futures.ThreadPoolExecutor(
            PREPARE_THREADS, thread_name_prefix="hearth-prepare")
        # Told the fraction loaded as tensors load (engine thread); ModelHost sets it.
        self.on_load_progress: Callable[[float], None] | None = None
        # Embedding batches stay short while some chat is generating (engine thread).
        self.embeddings = Embeddings(self._scheduler.call, self._prepare_pool, streaming=lambda: (
            self._scheduler.state is not None
            and any(slot.busy for slot in self._scheduler.state.slots)))

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    async def load(self, model: LocalModel, plan: LoadPlan | None = None) -> LoadedModel:
        """Load (replacing whatever was loaded). Raises ModelLoadFailed with a sentence."""
        plan = plan or LoadPlan()
        if plan.n_ctx < 16 or plan.n_parallel < 1:
            raise InvalidRequest("The context length must be at least 16 tokens and there must "
                                 "be at least one parallel slot.")
        future = self._scheduler.call(
            lambda: self._load_on_engine_thread(model.id, model.path, plan))
        try:
            self._loaded = await asyncio.wrap_future(future)
        except BaseException:
            if self._scheduler.state is None:  # failed after the old model was unloaded
                self._loaded = None
            raise
        return self._loaded

    def _note_load_progress(self, fraction: float) -> None:  # engine thread
        sink = self.on_load_progress
        if sink is not None:
            sink(fraction)

    async def unload(self) -> None:
        await asyncio.wrap_future(self._scheduler.call(self._unload_on_engine_thread))
        self._loaded = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Text deltas, then exactly one ``Finished``.

        The request is registered at once (so ``cancel`` works before the first read); the
        first read prepares it (renders the chat template and tokenizes, on a preparation
        thread) and queues it. Iterating raises a ``BackendError`` (ContextTooLong,
        TemplateError, InvalidRequest, ModelNotLoaded…) if the request is refused before
        generating; whatever goes wrong with one request ends that request alone. Closing the
        iterator early cancels the request.
        """
        queue: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        job = Job(request, self._mailboxes.for_loop(asyncio.get_running_loop()).sink_for(queue))
        with self._jobs_lock:
            if request.request_id in self._jobs:
                raise InvalidRequest(f"Request id {request.request_id} is already running.")
            self._jobs[request.request_id] = job
        return self._events(job, queue)

    async def _prepare(self, job: Job) -> None:
        """Give ``job`` its prompt tokens for the model loaded now, off the engine thread."""
        state = self._scheduler.state
        if state is None:
            raise ModelNotLoaded("No model is loaded. Load a model first, then send the "
                                 "message again.")
        loop = asyncio.get_running_loop()
        try:
            job.prepared = await loop.run_in_executor(self._prepare_pool, prepare_prompt,
                                                      state, job.request)
        except Exception as exc:
            raise failure_for(job.request.request_id, exc, "preparing its prompt") from exc

    async def _events(self, job: Job, queue: asyncio.Queue[GenerationEvent | BaseException]
                      ) -> AsyncIterator[GenerationEvent]:
        done = False
        attempts = 0
        try:
            while True:
                if job.prepared is None:
                    attempts += 1
                    try:
                        await self._prepare(job)
                    except BackendError:
                        done = True
                        raise
                    self._scheduler.submit(job)
                event = await queue.get()
                if isinstance(event, StalePrompt) and attempts < MAX_PREPARE_ATTEMPTS:
                    job.prepared = None  # another model was loaded meanwhile: once more
                    continue
                if isinstance(event, StalePrompt):
                    done = True
                    raise ModelNotLoaded("The model kept changing while this request waited "
                                         "to start. Send it again.")
                if isinstance(event, BaseException):
                    done = True
                    raise event
                if isinstance(event, Finished):
                    done = True
                    yield event
                    return
                yield event
        finally:
            with self._jobs_lock:
                self._jobs.pop(job.request.request_id, None)
            if not done:  # the consumer went away (disconnect, break, task cancelled)
                job.cancelled = True
                self._scheduler.poke()

    def in_flight(self) -> int:
        """Requests submitted and not yet finished: running plus waiting."""
        with self._jobs_lock:
            return len(self._jobs)

    def cancel(self, request_id: str) -> bool:
        """Stop a request at the next decode step; it ends with finish_reason 'cancelled'."""
        with self._jobs_lock:
            job = self._jobs.get(request_id)
        if job is None:
            return False
        job.cancelled = True
        self._scheduler.poke()
        return True

    def close(self) -> None:
        # Embedding models are freed on the engine thread, like everything native.
        with contextlib.suppress(Exception):
            self._scheduler.call(self.embeddings.close_all).result(timeout=10)
        self._scheduler.close()
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        self._loaded = None

    # -- engine thread ---------------------------------------------------------------------
    def _load_on_engine_thread(self, model_id: str, path: Path, plan: LoadPlan) -> LoadedModel:
        # A file that can't load must not cost the working model: check it before unloading.
        check_gguf_file(path)
        mmproj = Path(plan.mmproj_path) if plan.mmproj_path else None
        if mmproj is not None:
            check_projector_file(path, mmproj)
        self._unload_on_engine_thread()
        model = NativeModel(path, n_gpu_layers=plan.n_gpu_layers, use_mmap=plan.use_mmap,
                            on_progress=self._note_load_progress)
        vision: VisionContext | None = None
        try:
            threads = plan.n_threads or physical_cores()
            n_ctx = min(plan.n_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else plan.n_ctx
            n_batch, n_ubatch = plan.n_batch, min(plan.n_ubatch, plan.n_batch)
            if mmproj is not None:
                vision = VisionContext(model, mmproj, n_threads=threads,
                                       use_gpu=plan.n_gpu_layers > 0)
                image_tokens, whole = probe_image_tokens(vision)
                if whole and image_tokens > n_ubatch:
                    # Bidirectional image attention (Gemma 3): llama.cpp needs a whole image
                    # in one micro-batch, or it aborts the process.
                    n_ubatch = image_tokens
                    n_batch = max(n_batch, n_ubatch)
            config = ContextConfig(
                n_ctx=n_ctx * plan.n_parallel,
                n_batch=n_batch,
                n_ubatch=n_ubatch,
                n_seq_max=plan.n_parallel,
                n_threads=threads,
                n_threads_batch=plan.n_threads_batch or threads,
                flash_attn=plan.flash_attn,
                kv_cache_type=plan.kv_cache_type,
                swa_full=plan.swa_full,
                backend_sampling=(plan.backend_sampling if plan.backend_sampling is not None
                                  else output_on_gpu(model, plan.n_gpu_layers)),
            )
            ctx = NativeContext(model, config)
            gguf_template = model.chat_template()
            template = select_template(
                gguf_template, plan.chat_template_override,
                bos_token=model.token_text(model.bos_id),
                eos_token=model.token_text(model.eos_id))
            draft, speculation_note = speculation_for(model, plan, config)
        except BaseException:
            if vision is not None:
                vision.close()
            model.close()
            raise
        source = ("override" if plan.chat_template_override
                  else "gguf" if gguf_template else "chatml")
        info = LoadedModel(
            model_id=model_id, path=str(path), n_ctx=ctx.n_ctx // plan.n_parallel,
            n_parallel=plan.n_parallel, n_ctx_train=model.n_ctx_train, n_layer=model.n_layer,
            n_gpu_layers=plan.n_gpu_layers, n_threads=threads, template_source=source,
            backend_sampling=config.backend_sampling,
            supports_tools="tools" in template.source,
            draft_model=draft.name if draft is not None else None,
            speculation_note=speculation_note, vision=vision is not None)
        self._scheduler.forget_costs()
        self._scheduler.state = LoadedState(
            model=model, ctx=ctx, template=template, info=info,
            slots=[Slot(i) for i in range(plan.n_parallel)],
            prompts=PromptTokenizer(model, capacity=plan.n_parallel + 4),
            draft=draft, speculation_ok=not cannot_speculate(model), vision=vision)
        return info

    def _unload_on_engine_thread(self) -> None:
        self._scheduler.cancel_all()
        self._scheduler.drop_graph_samplers()
        state, self._scheduler.state = self._scheduler.state, None
        if state is not None:
            state.close()

    # -- engine thread, for benchmarks -----------------------------------------------------
    async def native_perf(self) -> tuple[int, float, int, float]:
        """llama.cpp's own counters (n_eval, t_eval_ms, n_p_eval, t_p_eval_ms)."""

        def read() -> tuple[int, float, int, float]:
            if self._scheduler.state is None:
                raise ModelNotLoaded("No model is loaded.")
            return self._scheduler.state.ctx.perf()

        return await asyncio.wrap_future(self._scheduler.call(read))

    async def reset_native_perf(self) -> None:
        def reset() -> None:
            if self._scheduler.state is not None:
                self._scheduler.state.ctx.perf_reset()

        await asyncio.wrap_future(self._scheduler.call(reset))

