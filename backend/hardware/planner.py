"""How to fit a model onto this machine: GPU layers and context length, decided before loading.

Pure functions of (model metadata, hardware, request), in the order llama.cpp's ``--fit``
(common/fit.cpp) uses: count *free* memory, keep a margin (1 GiB) free on every device, and
when the model does not fit, first shorten an automatic context toward a floor (4096), then
move layers to the CPU, back to front. Byte estimates follow what llama.cpp allocates:

* weights: the GGUF tensor sizes. ``n_gpu_layers`` counts the output head as one more layer
  (llama.cpp offloads it first: ngl=1 is the head alone, ngl=n_layer+1 is everything), and the
  token embeddings always stay on the CPU (a tied head is *copied* to the GPU).
* KV cache: per layer n_head_kv × (k_dim + v_dim) × bytes/element × cells, where cells is the
  context rounded up to 256, times the parallel slots (each slot has its own context); with
  ``swa_full=False`` a sliding-window layer keeps only window + n_ubatch cells per slot.
* a vision projector (``PlanRequest.projector``): its weights and one image's encoder compute
  buffer, on the GPU when any layer is (libmtmd loads it there), else in system RAM.
* compute buffer: the larger of the logits stage (n_vocab floats per token of a micro-batch)
  and, without flash attention, the attention stage (an n_ctx × n_ubatch float matrix per
  head). Checked against llama.cpp's own "compute buffer size" lines; see the constants.
  On a GPU that whole reservation is real memory. In system RAM only the pages a decode
  touches become resident, and the engine asks for one row of logits per slot, never one per
  prompt token, so the CPU side counts the logits it really produces (for Gemma 3's 262k
  vocabulary the difference is 512 MiB). Windows commits the reservation; the margin and
  pagefile absorb that.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from backend.engine.types import LoadPlan
from backend.errors import ModelLoadFailed
from backend.hardware.memory_model import (
    CPU_RUNTIME_BYTES,
    CTX_ALIGN,
    GPU_RUNTIME_BYTES,
    VOCAB_BYTES_PER_TOKEN,
    PlanRequest,
    compute_bytes,
    draft_model_bytes,
    embedding_request,
    flash_attention_for,
    kv_cache_bytes_per_layer,
    projector_bytes,
)
from backend.hardware.probe import GiB, Hardware
from backend.library.gguf_meta import GgufMetadata


class Verdict(StrEnum):
    FULL_GPU = "full_gpu"
    PARTIAL = "partial"
    CPU = "cpu"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class MemoryUse:
    weights: int = 0
    kv_cache: int = 0
    compute: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


@dataclass(frozen=True)
class _Inputs:
    meta: GgufMetadata
    hardware: Hardware
    request: PlanRequest


# Micro-batch on the CPU without flash attention. Each micro-batch's attention writes and
# re-reads an n_kv x n_ubatch float matrix per head; at 512 that spills out of the caches at
# a few thousand tokens of depth. SmolLM2 on 2 cores, a 3,100-token prompt: 208 tok/s at 512,
# 224-243 at 128 (as fast as flash attention's 238-244 at 512), and 5% faster at 400 and
# 1,200 tokens too; 64 was no better, 32 slower. The weights' matrix products lose nothing at
# 128 rows on a CPU. (The planner's memory estimate keeps 512: an upper bound.)
CPU_ATTENTION_UBATCH = 128


@dataclass(frozen=True)
class OffloadPlan:
    verdict: Verdict
    n_gpu_layers: int  # in llama.cpp's terms: n_layers_total means everything
    n_layers_total: int  # repeating layers + the output head
    n_ctx: int  # per slot
    flash_attn: bool
    gpu: MemoryUse  # predicted use on the GPU(s)
    cpu: MemoryUse  # predicted use in system RAM
    gpu_budget: int  # free VRAM minus the margin (0 without a usable GPU)
    cpu_budget: int  # available RAM minus the margin (minus GPU use on unified memory)
    reason: str  # one sentence for people
    inputs: _Inputs = field(repr=False, compare=False)  # what next_smaller_plan replans from
    ctx_shortened_from: int | None = None

    @property
    def total_bytes(self) -> int:
        return self.gpu.total + self.cpu.total

    @property
    def over_budget(self) -> bool:
        """Only a manual ``n_gpu_layers`` or an OOM retry can produce one that is."""
        return self.gpu.total > self.gpu_budget or self.cpu.total > self.cpu_budget

    def to_load_plan(self) -> LoadPlan:
        req = self.inputs.request
        n_ubatch = req.n_ubatch
        if not self.flash_attn and self.n_gpu_layers == 0:
            n_ubatch = min(n_ubatch, CPU_ATTENTION_UBATCH)
        # "auto" rather than forcing it on: llama.cpp then enables it wherever the backend
        # supports it (what the estimate assumes) and falls back where it does not.
        return LoadPlan(n_gpu_layers=self.n_gpu_layers, n_ctx=self.n_ctx,
                        n_parallel=req.n_parallel, n_batch=req.n_batch, n_ubatch=n_ubatch,
                        flash_attn=None if self.flash_attn else False,
                        kv_cache_type=req.kv_cache_type,  # type: ignore[arg-type]
                        swa_full=req.swa_full)


def _estimate(inp: _Inputs, n_gpu: int, n_ctx: int) -> tuple[MemoryUse, MemoryUse]:
    """(GPU use, CPU use) with ``n_gpu`` layers offloaded and ``n_ctx`` tokens per slot."""
    meta, req = inp.meta, inp.request
    flash = flash_attention_for(meta, inp.hardware, req)
    kv = kv_cache_bytes_per_layer(meta, n_ctx, n_parallel=req.n_parallel,
                                  kv_cache_type=req.kv_cache_type, swa_full=req.swa_full,
                                  n_ubatch=req.n_ubatch)
    first_gpu = max(meta.n_layer + 1 - n_gpu, 0)  # llama.cpp's i_gpu_start
    on_gpu = range(first_gpu, meta.n_layer)
    on_cpu = range(0, min(first_gpu, meta.n_layer))
    head = meta.output_head_bytes + meta.other_bytes
    cpu_weights = meta.token_embd_bytes + sum(meta.layer_bytes[i] for i in on_cpu)
    # Logits handed back to us (one row per slot) and the vocabulary tables.
    cpu_overhead = CPU_RUNTIME_BYTES + (4 * req.n_parallel + VOCAB_BYTES_PER_TOKEN) * meta.n_vocab
    # A draft model goes where the whole model is: the GPU when every layer is there.
    draft = draft_model_bytes(req, n_ctx, flash)
    # The projector runs on the GPU whenever the model uses one (libmtmd's use_gpu).
    projector = projector_bytes(req)
    if n_gpu == 0:
        cpu_weights += meta.output_bytes + meta.other_bytes
        cpu = MemoryUse(cpu_weights, sum(kv),
                        compute_bytes(meta, n_ctx, req, flash, logits_rows=req.n_parallel,
                                       attention=True),
                        cpu_overhead + draft + projector)
        return MemoryUse(), cpu
    n_devices = max(1, len(inp.hardware.usable_gpus))
    gpu = MemoryUse(
        weights=head + sum(meta.layer_bytes[i] for i in on_gpu),
        kv_cache=sum(kv[i] for i in on_gpu),
        # Reserved for a full micro-batch, on every card (each runs its slice of the graph).
        compute=n_devices * compute_bytes(meta, n_ctx, req, flash,
                                           logits_rows=min(req.n_ubatch, req.n_batch),
                                           attention=bool(on_gpu)),
        overhead=GPU_RUNTIME_BYTES * n_devices + projector
        + (draft if n_gpu > meta.n_layer else 0))
    cpu = MemoryUse(
        weights=cpu_weights, kv_cache=sum(kv[i] for i in on_cpu),
        compute=compute_bytes(meta, n_ctx, req, flash, logits_rows=0,
                               attention=bool(on_cpu)),
        overhead=cpu_overhead + (0 if n_gpu > meta.n_layer else draft))
    return gpu, cpu


def _budgets(inp: _Inputs, gpu_use: MemoryUse) -> tuple[int, int]:
    hw, margin = inp.hardware, inp.request.margin_bytes
    gpus = hw.usable_gpus
    cpu_budget = hw.ram_available_bytes - margin
    if hw.unified_memory:  # Apple: the GPU's share comes out of the same RAM
        gpu_budget = min(sum(g.free_bytes for g in gpus), hw.ram_available_bytes) - margin
        return max(0, gpu_budget), cpu_budget - gpu_use.total
    gpu_budget = sum(max(0, g.free_bytes - margin) for g in gpus)
    if len(gpus) > 1:  # only whole layers go to each card: expect to waste one per extra card
        gpu_budget -= (len(gpus) - 1) * max(inp.meta.layer_bytes, default=0)
    return max(0, gpu_budget), cpu_budget


def _fits(inp: _Inputs, n_gpu: int, n_ctx: int) -> tuple[bool, bool]:
    gpu, cpu = _estimate(inp, n_gpu, n_ctx)
    gpu_budget, cpu_budget = _budgets(inp, gpu)
    return gpu.total <= gpu_budget, cpu.total <= cpu_budget


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest x in [lo, hi] with ok(x), for ok monotone (true up to a point); None if none."""
    if lo > hi or not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def _gpu_name(hw: Hardware) -> str:
    gpus = hw.gpus
    if len(gpus) > 1:
        return f"{len(gpus)} GPUs"
    return f"the {gpus[0].name}" if gpus and gpus[0].backend != "override" else "the GPU"


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def _make(inp: _Inputs, n_gpu: int, n_ctx: int, verdict: Verdict | None, why: str,
          shortened_from: int | None = None) -> OffloadPlan:
    gpu, cpu = _estimate(inp, n_gpu, n_ctx)
    gpu_budget, cpu_budget = _budgets(inp, gpu)
    total = inp.meta.n_layer + 1
    if verdict is None:
        verdict = (Verdict.CPU if n_gpu == 0 else Verdict.FULL_GPU if n_gpu >= total
                   else Verdict.PARTIAL)
    req = inp.request
    return OffloadPlan(
        verdict=verdict, n_gpu_layers=n_gpu, n_layers_total=total, n_ctx=n_ctx,
        flash_attn=flash_attention_for(inp.meta, inp.hardware, req),
        gpu=gpu, cpu=cpu, gpu_budget=gpu_budget, cpu_budget=cpu_budget,
        reason=_reason(inp, verdict, n_gpu, n_ctx, gpu, cpu, why, shortened_from),
        inputs=inp, ctx_shortened_from=shortened_from)


def _reason(inp: _Inputs, verdict: Verdict, n_gpu: int, n_ctx: int, gpu: MemoryUse,
            cpu: MemoryUse, why: str, shortened_from: int | None) -> str:
    hw, meta = inp.hardware, inp.meta
    total = meta.n_layer + 1
    free_vram = sum(g.free_bytes for g in hw.usable_gpus)
    vram = (f"{_possessive(_gpu_name(hw))} {_gib(free_vram)} "
            f"{'of GPU memory' if hw.unified_memory else 'free VRAM'}")
    shorter = (f" once the context is shortened from {shortened_from:,} to {n_ctx:,} tokens"
               if shortened_from else "")
    if why == "manual":
        text = f"You chose to put {n_gpu} of {total} layers on the GPU"
        if n_gpu and gpu.total > free_vram - inp.request.margin_bytes:
            text += (f"; Hearth predicts {_gib(gpu.total)}, more than {vram} allows, so "
                     "loading may fail")
        return text + "."
    if why == "retry":
        where = f"{n_gpu} of {total} layers on the GPU" if n_gpu else "everything on the CPU"
        return (f"Loading ran out of memory, so Hearth is trying again with {where} and a "
                f"context of {n_ctx:,} tokens.")
    if verdict is Verdict.FULL_GPU:
        return (f"All {total} layers fit in {vram}{shorter} "
                f"({_gib(free_vram - gpu.total)} to spare).")
    if verdict is Verdict.PARTIAL:
        return (f"{n_gpu} of {total} layers fit in {vram}{shorter}; the other "
                f"{total - n_gpu} run on the CPU, so replies will be slower.")
    ram = f"{_gib(hw.ram_available_bytes)} of free memory"
    if verdict is Verdict.TOO_LARGE:
        has = (f"{ram}" if not hw.usable_gpus or hw.unified_memory
               else f"{_gib(free_vram)} of free VRAM and {ram}")
        return (f"{meta.name or 'This model'} needs about {_gib(gpu.total + cpu.total)} but "
                f"this computer has only {has}, even with a context of {n_ctx:,} tokens; "
                "pick a smaller model or a smaller quantization.")
    if hw.gpus and not hw.gpu_offload_supported:
        cause = (f"this llama.cpp build cannot use {_gpu_name(hw)} (rebuild with "
                 f"`{hw.rebuild_hint}` to use it)")
    elif hw.usable_gpus:
        cause = f"not even the output layer fits in {vram}"
    else:
        cause = "no usable GPU was found"
    return (f"The model runs on the CPU because {cause}; it uses {_gib(cpu.total)} of the "
            f"{ram}{shorter}.")


# Shape numbers past this are absurd (2**62 bytes is 4 EiB) and, multiplied together as
# floats, could overflow: a header gguf_meta parsed never has them, a hand-built value might.
_MAX_SHAPE_NUMBER = 2**62


def _check_shape(meta: GgufMetadata) -> None:
    """Refuse, with a sentence, a shape the arithmetic below can't work with."""
    numbers = (meta.n_layer, meta.n_embd, meta.head_dim_k, meta.head_dim_v, meta.n_ctx_train,
               meta.n_vocab, meta.sliding_window, meta.token_embd_bytes, meta.output_bytes,
               meta.other_bytes, *meta.n_head, *meta.n_head_kv, *meta.layer_bytes)
    if any(not 0 <= n <= _MAX_SHAPE_NUMBER for n in numbers) or not (
            len(meta.n_head_kv) == len(meta.swa_layers) == len(meta.layer_bytes)
            == meta.n_layer):
        raise ModelLoadFailed(f"{meta.name or 'This model'} describes an impossible shape "
                              "(negative, astronomically large or mismatched layer counts), "
                              "so Hearth can't plan how to load it. Get another conversion "
                              "of the model.")


def plan_offload(meta: GgufMetadata, hardware: Hardware,
                 request: PlanRequest | None = None) -> OffloadPlan:
    """Decide GPU layers and context for loading ``meta`` on ``hardware``. Raises
    ``ModelLoadFailed`` for a shape no model has (see ``_check_shape``)."""
    _check_shape(meta)
    req = request or PlanRequest()
    if meta.embedding_only:  # loaded beside the chat model, at its own fixed size
        req = embedding_request(meta, req)
    inp = _Inputs(meta, hardware, req)
    total = meta.n_layer + 1
    trained = meta.n_ctx_train or req.n_ctx or req.default_ctx
    auto_ctx = req.n_ctx is None
    want = min(req.n_ctx or req.default_ctx, trained)
    floor = min(req.min_ctx, want)

    if req.n_gpu_layers is not None:
        n_gpu = min(max(req.n_gpu_layers, 0), total) if hardware.usable_gpus else 0
        return _make(inp, n_gpu, want, None, "manual")

    def shrink_ctx(n_gpu: int) -> int | None:
        """Longest automatic context (a multiple of 256, at least the floor) that fits."""
        steps = _largest(0, (want - floor) // CTX_ALIGN,
                         lambda k: all(_fits(inp, n_gpu, floor + k * CTX_ALIGN)))
        return None if steps is None else floor + steps * CTX_ALIGN

    if not hardware.usable_gpus:
        if all(_fits(inp, 0, want)):
            return _make(inp, 0, want, Verdict.CPU, "")
        ctx = shrink_ctx(0) if auto_ctx else None
        if ctx is None:
            return _make(inp, 0, floor if auto_ctx else want, Verdict.TOO_LARGE, "")
        return _make(inp, 0, ctx, Verdict.CPU, "", shortened_from=want)

    # 1. Everything on the GPU at the wanted context.
    if all(_fits(inp, total, want)):
        return _make(inp, total, want, Verdict.FULL_GPU, "")
    # 2. Shorten an automatic context before giving up any layer.
    if auto_ctx and (ctx := shrink_ctx(total)) is not None:
        return _make(inp, total, ctx, Verdict.FULL_GPU, "", shortened_from=want)
    # 3. Move layers to the CPU, back to front, at the shortest allowed context.
    ctx = floor if auto_ctx else want
    shortened = want if ctx < want else None
    n_gpu = _largest(0, total, lambda g: _fits(inp, g, ctx)[0]) or 0
    if not _fits(inp, n_gpu, ctx)[1]:  # the CPU share only grows with fewer GPU layers
        return _make(inp, n_gpu, ctx, Verdict.TOO_LARGE, "")
    return _make(inp, n_gpu, ctx, None, "", shortened_from=shortened)


def next_smaller_plan(plan: OffloadPlan) -> OffloadPlan | None:
    """The plan to retry with after a load ran out of memory: about an eighth fewer GPU
    layers while any are left, then half the context down to the floor; None when neither
    can shrink further (the caller then reports ``InsufficientMemory``)."""
    inp = plan.inputs
    if plan.verdict is Verdict.TOO_LARGE:
        return None
    if plan.n_gpu_layers > 0:
        step = max(1, math.ceil(plan.n_layers_total / 8))
        return _make(inp, max(0, plan.n_gpu_layers - step), plan.n_ctx, None, "retry")
    floor = min(inp.request.min_ctx, plan.n_ctx)
    if plan.n_ctx <= floor:
        return None
    ctx = max(floor, plan.n_ctx // 2 // CTX_ALIGN * CTX_ALIGN)
    return dataclasses.replace(_make(inp, 0, ctx, None, "retry"),
                               ctx_shortened_from=plan.ctx_shortened_from or plan.n_ctx)
