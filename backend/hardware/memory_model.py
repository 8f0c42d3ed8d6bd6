"""Memory a load takes: KV cache, compute buffer, runtime overheads, and the request asking.

Byte estimates follow what llama.cpp allocates (see ``planner``'s docstring for the whole
model); the planner searches layer splits and context lengths with these. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.errors import InvalidRequest
from backend.hardware.probe import GiB, Hardware
from backend.library.gguf_meta import GgufMetadata
from backend.library.projector import ProjectorInfo

MiB = 1024**2
CTX_ALIGN = 256  # llama.cpp pads every context (and each slot's share) to 256 cells
KV_BYTES_PER_ELEMENT = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32,
                        "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}
# Allocator slack seen on top of the two stages (2–4 MiB on SmolLM2 and Gemma 3 270M).
COMPUTE_BASE_BYTES = 4 * MiB
# CUDA context, cuBLAS workspace and kernel images: VRAM that no llama.cpp buffer reports.
# Measured with bench/gpu_planner.py on an H200 (CUDA 13): 590-620 MiB above llama.cpp's own
# buffers for 1B/8B/30B-shaped models at 4k and 32k context.
GPU_RUNTIME_BYTES = 600 * MiB
# Process-side extras of a loaded model (ggml contexts, thread pools, graph metadata) plus
# llama.cpp's vocabulary tables (token strings, hash maps: ~120 bytes a token, 30 MB for a
# 262k vocabulary). Calibrated with bench/planner_accuracy.py on the two test models.
CPU_RUNTIME_BYTES = 16 * MiB
VOCAB_BYTES_PER_TOKEN = 128
# An embedding model's context, as backend/engine/embedder.py opens it: its window times 4
# (several inputs per decode), capped at this many tokens, in one micro-batch.
EMBED_BATCH_TOKENS = 2048


@dataclass(frozen=True)
class PlanRequest:
    n_ctx: int | None = None  # per slot; None: automatic (trained, capped at default_ctx)
    default_ctx: int = 8192
    min_ctx: int = 4096  # an automatic context is never shortened below this
    kv_cache_type: str = "f16"
    # None: Hearth decides (``flash_attention_for``); True/False: the user's setting.
    flash_attn: bool | None = None
    n_parallel: int = 1
    n_batch: int = 2048  # llama-server's; memory depends on n_ubatch (micro-batches)
    n_ubatch: int = 512
    margin_bytes: int = GiB  # kept free on every device (a setting)
    n_gpu_layers: int | None = None  # manual override: skips the search
    swa_full: bool = True  # llama.cpp's default, and what the engine loads with today
    # A draft model loaded beside (speculative decoding): all on the GPU when the model is,
    # else on the CPU, with a context of the same length.
    draft: GgufMetadata | None = None
    # A vision projector loaded beside (images): its weights and its encoder's compute
    # buffer, on the GPU when any of the model's layers are, else in system RAM.
    projector: ProjectorInfo | None = None

    def __post_init__(self) -> None:
        if self.kv_cache_type not in KV_BYTES_PER_ELEMENT:
            raise InvalidRequest(f"Unknown KV cache type '{self.kv_cache_type}'; use one of "
                                 f"{', '.join(KV_BYTES_PER_ELEMENT)}.")
        if self.n_parallel < 1 or self.n_ubatch < 1 or self.n_batch < 1:
            raise InvalidRequest("Parallel slots and batch sizes must be at least 1.")


def embedding_request(meta: GgufMetadata, req: PlanRequest) -> PlanRequest:
    """How an embedding model loads (``GgufMetadata.embedding_only``), whatever the chat
    settings say: one context of ``EMBED_BATCH_TOKENS`` at most, decoded as one micro-batch,
    one sequence set (no parallel chat slots) and no draft model. Its size is fixed, so the
    planner never shortens it; an encoder keeps no KV cache (``kv_cache_bytes_per_layer``)
    and no model writes logits here, only one vector per token (``compute_bytes``)."""
    window = min(meta.n_ctx_train or 512, EMBED_BATCH_TOKENS)
    tokens = max(window, min(EMBED_BATCH_TOKENS, 4 * window))
    return replace(req, n_ctx=tokens, default_ctx=tokens, min_ctx=tokens, n_parallel=1,
                   n_batch=tokens, n_ubatch=tokens, draft=None, swa_full=True, projector=None)


def pad_cells(n: int, align: int = CTX_ALIGN) -> int:
    return -(-n // align) * align


def kv_cache_bytes_per_layer(meta: GgufMetadata, n_ctx: int, *, n_parallel: int = 1,
                             kv_cache_type: str = "f16", swa_full: bool = True,
                             n_ubatch: int = 512) -> list[int]:
    """KV bytes of each layer for ``n_parallel`` slots of ``n_ctx`` tokens each; none for an
    encoder (llama.cpp gives BERT-style models no KV cache: each input is read whole)."""
    if not meta.causal:
        return [0] * len(meta.n_head_kv)
    bpe = KV_BYTES_PER_ELEMENT[kv_cache_type]
    cells = pad_cells(n_ctx)
    swa_cells = cells
    if meta.sliding_window and not swa_full:
        swa_cells = pad_cells(min(cells, meta.sliding_window + n_ubatch))
    return [int(n_kv * (meta.head_dim_k + meta.head_dim_v) * bpe
                * (swa_cells if swa else cells) * n_parallel)
            for n_kv, swa in zip(meta.n_head_kv, meta.swa_layers, strict=True)]


def kv_cache_bytes(meta: GgufMetadata, n_ctx: int, *, n_parallel: int = 1,
                   kv_cache_type: str = "f16", swa_full: bool = True, n_ubatch: int = 512) -> int:
    return sum(kv_cache_bytes_per_layer(meta, n_ctx, n_parallel=n_parallel,
                                        kv_cache_type=kv_cache_type, swa_full=swa_full,
                                        n_ubatch=n_ubatch))


def compute_bytes(meta: GgufMetadata, n_ctx: int, req: PlanRequest, flash: bool, *,
                   logits_rows: int, attention: bool) -> int:
    """Compute buffer of one device: the peak of the stages it runs."""
    n_tok = min(req.n_ubatch, req.n_batch, pad_cells(n_ctx) * req.n_parallel)
    n_kv = pad_cells(n_ctx)
    if meta.embedding_only:  # a vector per token comes out, never a row of logits
        logits_rows = 0
    stage_logits = 4 * (logits_rows * meta.n_vocab + 2 * n_tok * meta.n_embd)
    if attention:
        n_head = max(meta.n_head, default=0)
        # Without FA: the KQ scores (f32, one n_kv × n_tok matrix per head), the mask, and an
        # f16 copy of the scores for the KQ·V product (ggml's CPU work buffer, CUDA's pool).
        # FA never builds them: only its f16 mask remains.
        scores = (2 * n_tok * n_kv if flash else n_tok * n_kv * (6 * n_head + 4))
        stage_attn = scores + 4 * n_tok * 6 * meta.n_embd
    else:  # only embeddings in and the mask: the host side of a fully offloaded model
        stage_attn = 4 * n_tok * (meta.n_embd + n_kv)
    return max(stage_logits, stage_attn) + COMPUTE_BASE_BYTES


# llama.cpp's CPU flash-attention kernel walks the cache one position at a time, which costs
# most with narrow heads. bench/cpu_flash_attn.py (docs/bench/cpu_flash_attn.json, 2 cores),
# decode tok/s with flash attention on / off at 2,048 tokens of context: head dim 64 38 / 62
# (SmolLM2-135M 22 / 47), 128 65 / 64, 256 68 / 64; its prefill is 10-25% faster with it on.
# A chat spends its time decoding, so a machine without a GPU loads narrow-headed models
# (SmolLM2, Llama 3.2 1B, Qwen2.5 0.5B) without it. The prefill it gives up is real (a
# 3,100-token first turn 1.25x faster with it on), but so is the loss at depth: on a bare
# context (bench/prefill_bench.py --kernels) a 25-token follow-up chunk at that depth took
# 6x longer with it on and a decode step 2.8x, the same in llama-server: that, not the prompt
# cache, is why follow-up turns went 216 -> 1,174 ms with it on. Widths between 64 and 128
# (Phi's 80 and 96) are unmeasured and keep llama.cpp's choice.
CPU_SLOW_FLASH_ATTN_HEAD_DIM = 64


def flash_attention_for(meta: GgufMetadata, hardware: Hardware, req: PlanRequest) -> bool:
    """Whether the load uses flash attention (llama.cpp's "auto" turns it on everywhere)."""
    if req.kv_cache_type not in ("f32", "f16", "bf16"):
        return True  # llama.cpp needs it for a quantized V cache
    if req.flash_attn is not None:
        return req.flash_attn
    narrow = 0 < meta.head_dim_k <= CPU_SLOW_FLASH_ATTN_HEAD_DIM
    return bool(hardware.usable_gpus) or not narrow


def draft_model_bytes(req: PlanRequest, n_ctx: int, flash: bool) -> int:
    """What the draft model adds where it is loaded: weights, KV cache for every slot and
    its compute buffer (one row of logits per slot)."""
    d = req.draft
    if d is None:
        return 0
    weights = d.token_embd_bytes + d.output_bytes + d.other_bytes + sum(d.layer_bytes)
    kv = kv_cache_bytes(d, n_ctx, n_parallel=req.n_parallel, kv_cache_type=req.kv_cache_type,
                        swa_full=req.swa_full, n_ubatch=req.n_ubatch)
    compute = compute_bytes(d, n_ctx, req, flash, logits_rows=req.n_parallel, attention=True)
    return weights + kv + compute + VOCAB_BYTES_PER_TOKEN * d.n_vocab


def projector_bytes(req: PlanRequest) -> int:
    """What a vision projector adds where it runs: weights plus one image's compute buffer
    (``ProjectorInfo.memory_bytes``); 0 without one."""
    return req.projector.memory_bytes if req.projector is not None else 0
