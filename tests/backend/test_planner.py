"""The offload planner, table-driven over the real shapes of well-known models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from backend.errors import InvalidRequest
from backend.hardware.memory_model import kv_cache_bytes, kv_cache_bytes_per_layer
from backend.hardware.planner import (
    OffloadPlan,
    PlanRequest,
    Verdict,
    next_smaller_plan,
    plan_offload,
)
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.gguf_meta import GgufMetadata

SHAPES: dict[str, dict[str, Any]] = {
    k: v for k, v in json.loads(
        (Path(__file__).parents[1] / "fixtures" / "model_shapes.json").read_text()).items()
    if not k.startswith("_")
}
GPU_SIZES_GIB = (0, 4, 8, 24, 80)


def meta_of(name: str) -> GgufMetadata:
    """GgufMetadata for a fixture shape: Q4_K_M puts embeddings at Q4_K and the head at Q6_K
    (a tied head: embeddings at Q6_K); the rest of the file is split evenly over the layers."""
    s = SHAPES[name]
    n, embd_elements = s["n_layer"], s["n_vocab"] * s["n_embd"]
    q4_k, q6_k = 4.5 / 8, 6.5625 / 8
    if s["tied_embeddings"]:
        token_embd, output = int(embd_elements * q6_k), 0
    else:
        token_embd, output = int(embd_elements * q4_k), int(embd_elements * q6_k)
    window, pattern = s.get("sliding_window", 0), s.get("swa_pattern", 0)
    return GgufMetadata(
        architecture=s["architecture"], name=name, file_size=s["q4_k_m_bytes"],
        header_size=0, parameter_count=0, file_type=15, quant_name="Q4_K_M",
        n_layer=n, n_embd=s["n_embd"], n_head=(s["n_head"],) * n,
        n_head_kv=(s["n_head_kv"],) * n, head_dim_k=s["head_dim"], head_dim_v=s["head_dim"],
        n_ctx_train=s["n_ctx_train"], n_vocab=s["n_vocab"], sliding_window=window,
        swa_layers=tuple(bool(window) and il % pattern < pattern - 1 for il in range(n)),
        n_expert=s.get("n_expert", 0), n_expert_used=s.get("n_expert_used", 0),
        layer_bytes=((s["q4_k_m_bytes"] - token_embd - output) // n,) * n,
        token_embd_bytes=token_embd, output_bytes=output, other_bytes=0,
        chat_template=None, bos_token_id=None, eos_token_id=None, bos_token=None,
        eos_token=None)


def machine(gpu_gib: float, ram_gib: float = 64, *, offload: bool = True,
            gpus: int = 1) -> Hardware:
    cards = tuple(GpuInfo(i, "NVIDIA RTX Test", int(gpu_gib * GiB) + GiB // 2,
                          int(gpu_gib * GiB), "cuda") for i in range(gpus if gpu_gib else 0))
    return Hardware("Test CPU", 8, int(ram_gib * GiB) + GiB, int(ram_gib * GiB), cards,
                    gpu_offload_supported=offload)


# Verdicts at the automatic context (trained, capped at 8192) with 64 GiB of free RAM.
VERDICTS = {
    #                  none   4 GiB      8 GiB       24 GiB      80 GiB
    "llama-3.2-1b":   ("cpu", "full_gpu", "full_gpu", "full_gpu", "full_gpu"),
    "llama-3.2-3b":   ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "llama-3.1-8b":   ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "qwen2.5-7b":     ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "qwen3-30b-a3b":  ("cpu", "partial", "partial", "full_gpu", "full_gpu"),
    "gemma-3-4b":     ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "gemma-3-12b":    ("cpu", "partial", "partial", "full_gpu", "full_gpu"),
    "gemma-3-27b":    ("cpu", "partial", "partial", "full_gpu", "full_gpu"),
    "phi-4-mini":     ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "mistral-7b-v0.3": ("cpu", "partial", "full_gpu", "full_gpu", "full_gpu"),
    "smollm2-135m":   ("cpu", "full_gpu", "full_gpu", "full_gpu", "full_gpu"),
}


def all_plans() -> list[tuple[str, float, OffloadPlan]]:
    return [(name, gib, plan_offload(meta_of(name), machine(gib)))
            for name in SHAPES for gib in GPU_SIZES_GIB]


def test_fixture_covers_every_model() -> None:
    assert set(VERDICTS) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_verdicts_across_gpu_sizes(name: str) -> None:
    got = tuple(plan_offload(meta_of(name), machine(gib)).verdict.value
                for gib in GPU_SIZES_GIB)
    assert got == VERDICTS[name]


def test_never_predicts_more_than_free_memory_minus_margin() -> None:
    for name, gib, plan in all_plans():
        assert plan.verdict is not Verdict.TOO_LARGE
        assert plan.gpu.total <= max(0, gib * GiB - GiB), (name, gib)
        assert plan.cpu.total <= 64 * GiB - GiB, (name, gib)
        assert not plan.over_budget
        assert plan.reason.endswith(".") and len(plan.reason) < 300


def test_partial_plans_put_as_many_layers_as_fit() -> None:
    for name, _gib, plan in all_plans():
        if plan.verdict is Verdict.PARTIAL:
            one_more = plan_offload(meta_of(name), plan.inputs.hardware,
                                    PlanRequest(n_gpu_layers=plan.n_gpu_layers + 1))
            assert one_more.over_budget, name
            assert 0 < plan.n_gpu_layers < plan.n_layers_total


def test_kv_cache_of_llama_3_1_8b_at_8192_is_one_gib() -> None:
    meta = meta_of("llama-3.1-8b")  # 32 layers × 8 kv heads × (128 + 128) × 2 bytes × 8192
    assert kv_cache_bytes(meta, 8192) == GiB
    plan = plan_offload(meta, machine(24), PlanRequest(n_ctx=8192))
    assert plan.gpu.kv_cache + plan.cpu.kv_cache == GiB
    assert kv_cache_bytes(meta, 8192, kv_cache_type="q8_0") == GiB * 34 // 32 // 2
    assert kv_cache_bytes(meta, 8192, n_parallel=4) == 4 * GiB  # each slot has its own context


def test_gemma_sliding_window_layers_cache_only_the_window() -> None:
    meta = meta_of("gemma-3-27b")
    per_token = 16 * (128 + 128) * 2
    layers = kv_cache_bytes_per_layer(meta, 131072, swa_full=False, n_ubatch=512)
    assert layers[:6] == [per_token * 1536] * 5 + [per_token * 131072]  # 5 local : 1 global
    assert sum(meta.swa_layers) == 52  # 62 layers, every 6th global
    swa_part = sum(b for b, swa in zip(layers, meta.swa_layers, strict=True) if swa)
    assert swa_part == 52 * per_token * 1536  # window 1024 + one micro-batch, padded to 256
    assert kv_cache_bytes(meta, 32768, swa_full=False) < kv_cache_bytes(meta, 32768) / 4
    # With swa_full (llama.cpp's default, the engine's today) every layer holds the context.
    assert kv_cache_bytes(meta, 32768) == 62 * per_token * 32768


def test_context_shrinks_before_layers_drop() -> None:
    meta = meta_of("llama-3.1-8b")
    request = PlanRequest(default_ctx=65536)  # automatic context, wants 64k
    roomy = plan_offload(meta, machine(24), request)
    assert (roomy.verdict, roomy.n_ctx) == (Verdict.FULL_GPU, 65536)
    squeezed = plan_offload(meta, machine(8), request)
    assert squeezed.verdict is Verdict.FULL_GPU
    assert 4096 <= squeezed.n_ctx < 65536 and squeezed.n_ctx % 256 == 0
    assert squeezed.ctx_shortened_from == 65536 and "shortened" in squeezed.reason
    tight = plan_offload(meta, machine(4), request)  # even 4096 does not fit: now layers go
    assert (tight.verdict, tight.n_ctx) == (Verdict.PARTIAL, 4096)
    # The shortened context is the longest that fits: 256 more would not.
    longer = plan_offload(meta, machine(8), PlanRequest(n_ctx=squeezed.n_ctx + 256))
    assert longer.verdict is Verdict.PARTIAL


def test_a_context_the_user_chose_is_kept_and_layers_drop_instead() -> None:
    plan = plan_offload(meta_of("llama-3.1-8b"), machine(8), PlanRequest(n_ctx=65536))
    assert (plan.verdict, plan.n_ctx, plan.ctx_shortened_from) == (Verdict.PARTIAL, 65536, None)
    capped = plan_offload(meta_of("smollm2-135m"), machine(8), PlanRequest(n_ctx=100_000))
    assert capped.n_ctx == 8192  # never beyond what the model was trained on


def test_margin_is_respected() -> None:
    meta = meta_of("gemma-3-12b")
    no_margin = plan_offload(meta, machine(8), PlanRequest(margin_bytes=0))
    default = plan_offload(meta, machine(8))
    big_margin = plan_offload(meta, machine(8), PlanRequest(margin_bytes=3 * GiB))
    assert no_margin.n_gpu_layers > default.n_gpu_layers > big_margin.n_gpu_layers
    assert default.gpu.total <= 7 * GiB and big_margin.gpu.total <= 5 * GiB


def test_no_gpu_build_without_offload_and_too_large() -> None:
    meta = meta_of("gemma-3-27b")
    hw = dataclasses.replace(machine(24, offload=False), rebuild_hint="make it so")
    plan = plan_offload(meta, hw)
    assert plan.verdict is Verdict.CPU and plan.n_gpu_layers == 0
    assert "cannot use" in plan.reason and "make it so" in plan.reason
    small = plan_offload(meta, machine(0, ram_gib=8))
    assert small.verdict is Verdict.TOO_LARGE and "needs about" in small.reason
    # A small RAM machine runs a small model on the CPU, shortening an automatic context.
    cpu = plan_offload(meta_of("llama-3.1-8b"), machine(0, ram_gib=6.5))
    assert cpu.verdict is Verdict.CPU and cpu.n_ctx < 8192


def test_quantized_kv_cache_fits_more_and_turns_flash_attention_on() -> None:
    meta = meta_of("llama-3.1-8b")
    f16 = plan_offload(meta, machine(6), PlanRequest(n_ctx=32768))
    q4 = plan_offload(meta, machine(6), PlanRequest(n_ctx=32768, kv_cache_type="q4_0",
                                                    flash_attn=False))
    assert q4.n_gpu_layers > f16.n_gpu_layers and q4.flash_attn
    with pytest.raises(InvalidRequest):
        PlanRequest(kv_cache_type="q3_k")


def test_flash_attention_off_grows_the_compute_buffer_with_context() -> None:
    meta = meta_of("llama-3.1-8b")
    on = plan_offload(meta, machine(80), PlanRequest(n_ctx=32768))
    off = plan_offload(meta, machine(80), PlanRequest(n_ctx=32768, flash_attn=False))
    # ≈ 4 bytes × 512 tokens × 32768 cells × 32 heads of attention scores, and more.
    assert off.gpu.compute - on.gpu.compute > 2 * GiB


def test_manual_layers_are_honoured_and_flagged_when_over_budget() -> None:
    meta = meta_of("llama-3.1-8b")
    plan = plan_offload(meta, machine(4), PlanRequest(n_gpu_layers=33))
    assert plan.n_gpu_layers == 33 and plan.over_budget and "may fail" in plan.reason
    assert plan_offload(meta, machine(0), PlanRequest(n_gpu_layers=20)).n_gpu_layers == 0


def test_output_head_goes_first_and_embeddings_stay_on_the_cpu() -> None:
    meta = meta_of("llama-3.1-8b")
    head_only = plan_offload(meta, machine(24), PlanRequest(n_gpu_layers=1))
    assert head_only.gpu.weights == meta.output_bytes and head_only.gpu.kv_cache == 0
    full = plan_offload(meta, machine(24))
    assert full.cpu.weights == meta.token_embd_bytes and full.n_gpu_layers == 33


def test_unified_memory_shares_ram_with_the_gpu() -> None:
    gpu = GpuInfo(0, "Apple M2 Pro", int(21.3 * GiB), int(21.3 * GiB), "metal",
                  unified_memory=True)
    roomy = Hardware("Apple M2 Pro", 8, 32 * GiB, 30 * GiB, (gpu,), True)
    plan = plan_offload(meta_of("gemma-3-27b"), roomy)
    assert plan.verdict is Verdict.FULL_GPU and "GPU memory" in plan.reason
    assert plan.cpu_budget == 29 * GiB - plan.gpu.total  # what the GPU holds, RAM lacks
    busy = dataclasses.replace(roomy, ram_available_bytes=12 * GiB)  # other apps hold RAM
    assert plan_offload(meta_of("gemma-3-27b"), busy).verdict is Verdict.TOO_LARGE
    assert plan_offload(meta_of("gemma-3-4b"), busy).verdict is Verdict.FULL_GPU


def test_two_gpus_pool_their_memory() -> None:
    one = plan_offload(meta_of("gemma-3-27b"), machine(12))
    two = plan_offload(meta_of("gemma-3-27b"), machine(12, gpus=2))
    assert one.verdict is Verdict.PARTIAL and two.verdict is Verdict.FULL_GPU
    assert "2 GPUs" in two.reason


def test_next_smaller_plan_drops_layers_then_context_then_gives_up() -> None:
    plan: OffloadPlan | None = plan_offload(meta_of("llama-3.1-8b"), machine(24),
                                            PlanRequest(n_ctx=16384))
    steps = []
    while plan is not None:
        steps.append((plan.n_gpu_layers, plan.n_ctx))
        plan = next_smaller_plan(plan)
    layers = [g for g, _ in steps]
    assert layers == sorted(layers, reverse=True) and layers[0] == 33 and layers[-1] == 0
    contexts = [c for g, c in steps if g == 0]
    assert contexts == [16384, 8192, 4096]  # halved down to the floor, then no more
    assert all(c == 16384 for g, c in steps if g > 0)


def test_to_load_plan() -> None:
    plan = plan_offload(meta_of("llama-3.1-8b"), machine(24),
                        PlanRequest(n_ctx=8192, n_parallel=2, flash_attn=False))
    load = plan.to_load_plan()
    assert (load.n_gpu_layers, load.n_ctx, load.n_parallel) == (33, 8192, 2)
    assert load.flash_attn is False and load.n_ubatch == 512
    assert plan_offload(meta_of("llama-3.1-8b"), machine(0)).to_load_plan().flash_attn is None
    # On the CPU without flash attention, smaller micro-batches (the attention's score matrix
    # stays in the caches); with it, or on a GPU, llama.cpp's 512.
    cpu = plan_offload(meta_of("smollm2-135m"), machine(0)).to_load_plan()
    assert (cpu.n_gpu_layers, cpu.flash_attn, cpu.n_ubatch) == (0, False, 128)
    assert plan_offload(meta_of("llama-3.1-8b"), machine(0)).to_load_plan().n_ubatch == 512


@pytest.mark.parametrize(("name", "gpu_gib", "request_kw", "expected"), [
    # Narrow heads on a machine without a GPU: llama.cpp's CPU kernel decodes them slowly.
    ("smollm2-135m", 0, {}, False),
    ("llama-3.2-1b", 0, {}, False),
    ("llama-3.1-8b", 0, {}, True),  # 128-wide heads: llama.cpp's choice (on)
    ("gemma-3-4b", 0, {}, True),
    ("smollm2-135m", 8, {}, True),  # a GPU runs the attention
    ("smollm2-135m", 0, {"flash_attn": True}, True),  # the user's setting wins
    ("llama-3.1-8b", 24, {"flash_attn": False}, False),
    ("smollm2-135m", 0, {"kv_cache_type": "q8_0"}, True),  # a quantized cache needs it
])
def test_flash_attention_choice(name: str, gpu_gib: float, request_kw: dict[str, Any],
                                expected: bool) -> None:
    plan = plan_offload(meta_of(name), machine(gpu_gib), PlanRequest(n_ctx=4096, **request_kw))
    assert plan.flash_attn is expected
    assert plan.to_load_plan().flash_attn is (None if expected else False)
