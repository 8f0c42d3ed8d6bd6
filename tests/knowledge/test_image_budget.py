"""Images count against the documents' budget: the projector's most tokens per image (from its
header, no model loaded) are taken from the context before document text is fitted, so a chat
with pictures and attachments doesn't overflow."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.api import ChatMessage, Hearth, SettingsStore
from backend.application.grounding import context_budget
from backend.application.hearth import _image_tokens
from backend.engine.types import ImageInput
from backend.library.image_tokens import FALLBACK_IMAGE_TOKENS, tokens_per_image
from backend.library.projector import ProjectorInfo, read_projector
from tests.backend.gguf_crafting import ARRAY, UINT32, Arr, Kv
from tests.library.projectors import write_projector

RED, BLUE = ImageInput(b"red pixels"), ImageInput(b"blue pixels")


def _info(kind: str, image_size: int, patch: int, **fields: int | bool) -> ProjectorInfo:
    return ProjectorInfo(file_size=0, weights_bytes=0, projector_type=kind, projection_dim=64,
                         image_size=image_size, patch_size=patch, n_embd=32, n_ff=64,
                         n_layer=1, n_head=2, **fields)  # type: ignore[arg-type]


def test_the_budget_takes_every_image_shown() -> None:
    text_only = [ChatMessage("user", "What is in the picture?")]
    base = context_budget(8192, text_only, 512, image_tokens=300)
    one = [ChatMessage("user", "What is in the picture?", images=(RED,))]
    assert context_budget(8192, one, 512, image_tokens=300) == base - 300
    # The same image shown again is rendered again: it costs twice.
    again = [*one, ChatMessage("assistant", ""), ChatMessage("user", "", images=(RED, BLUE))]
    assert context_budget(8192, again, 512, image_tokens=300) < base - 900
    # Without a figure the fallback is generous, not zero.
    assert context_budget(8192, one, 512) == base - FALLBACK_IMAGE_TOKENS
    with pytest.raises(ValueError, match="0 or more"):
        context_budget(8192, one, 512, image_tokens=-1)


@pytest.mark.parametrize(("info", "at_least", "at_most"), [
    # LLaVA 1.5 (CLIP 336/14): 576 patches and the class token.
    (_info("mlp", 336, 14), 577, 700),
    # LLaVA-NeXT: the same per tile, up to 4 tiles and the overview.
    (_info("mlp", 336, 14, grid=True), 5 * 577, 5 * 700),
    # Gemma 3 (896/14, pooled 4x4): 256 tokens.
    (_info("gemma3", 896, 14), 256, 320),
    # Qwen 2.5-VL with a stated pixel cap: merged 2x2, so 28x28 pixels a token.
    (_info("qwen2.5vl_merger", 0, 14, max_pixels=1280 * 28 * 28), 1280, 1400),
    # Qwen 2-VL without one: llama.cpp's cap of 4096.
    (_info("qwen2vl_merger", 0, 14), 4096, 4200),
    # SmolVLM (idefics3, 512 px tiles of 64 tokens, longest edge 1536): 9 tiles + overview.
    (_info("idefics3", 512, 16, n_merge=4, longest_edge=1536), 10 * 64, 10 * 100),
    # MiniCPM-V: 64 queries a slice, up to 9 slices and the overview.
    (_info("resampler", 448, 14, query_num=64), 10 * 64, 10 * 100),
])
def test_tokens_per_image_err_high(info: ProjectorInfo, at_least: int, at_most: int) -> None:
    assert at_least <= tokens_per_image(info) <= at_most


def test_the_estimate_reads_merge_and_tiling_from_the_header(tmp_path: Path) -> None:
    path = write_projector(tmp_path / "mmproj-smolvlm.gguf", kind=b"idefics3",
                           image_size=512, patch_size=16, extra=(
                               Kv(b"clip.vision.projector.scale_factor", UINT32, 4),
                               Kv(b"clip.vision.preproc_image_size", UINT32, 1024)))
    info = read_projector(path)
    assert (info.n_merge, info.longest_edge) == (4, 1024)
    assert 5 * 64 <= tokens_per_image(info) <= 5 * 100  # 2x2 tiles and the overview
    grid = write_projector(tmp_path / "mmproj-llava16.gguf", image_size=336, patch_size=14,
                           extra=(Kv(b"clip.vision.image_grid_pinpoints", ARRAY,
                                     Arr(UINT32, [336, 672, 672, 336])),))
    assert read_projector(grid).grid
    assert tokens_per_image(read_projector(grid)) >= 5 * 577
    # A hostile merge factor is refused like any other bad header value.
    bad = write_projector(tmp_path / "mmproj-bad.gguf", kind=b"gemma3", extra=(
        Kv(b"clip.vision.projector.scale_factor", UINT32, 1 << 20),))
    with pytest.raises(Exception, match="projector"):
        read_projector(bad)


def test_hearth_reads_the_models_projector_without_loading(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    proj = write_projector(tmp_path / "mmproj.gguf", kind=b"gemma3", image_size=896,
                           patch_size=14)
    hearth = Hearth(SettingsStore.open())
    try:
        monkeypatch.setattr(hearth, "is_remote", lambda _: False)
        monkeypatch.setattr(hearth, "find_model", lambda _: SimpleNamespace(mmproj=proj))
        assert 256 <= _image_tokens(hearth, "gemma3-vision") <= 320
        monkeypatch.setattr(hearth, "find_model", lambda _: SimpleNamespace(mmproj=None))
        assert _image_tokens(hearth, "text-only") == FALLBACK_IMAGE_TOKENS
    finally:
        hearth.close()


DAY = ("Day {i}: the weather was mild and the market sold apples, pears and plums at the "
       "usual prices. ")


def test_a_document_that_fits_beside_text_is_retrieved_beside_images(tmp_path: Path) -> None:
    """~3,000 tokens of document fit whole in 8k beside a question, not beside two images of
    2,048 tokens each: then passages are chosen instead, and the whole stays under 8k."""
    doc = tmp_path / "almanac.txt"
    doc.write_text("\n\n".join(DAY.format(i=i) * 2 for i in range(50)), encoding="utf-8")
    hearth = Hearth(SettingsStore.open())
    try:
        knowledge = hearth.knowledge
        chat = hearth.history.create_conversation("smollm2:135m")
        asyncio.run(knowledge.attach_file(chat.id, doc))
        assert knowledge.wait_idle(60)
        knowledge._image_tokens = lambda _: 2048  # what a Qwen-sized projector reports
        plain = [ChatMessage("user", "What did the market sell on day 7?")]
        pictured = [dataclasses.replace(plain[0], images=(RED, BLUE))]
        whole = asyncio.run(knowledge.ground("smollm2:135m", plain, conversation_id=chat.id,
                                             n_ctx=8192))
        assert whole.mode == "whole"
        fitted = asyncio.run(knowledge.ground("smollm2:135m", pictured,
                                              conversation_id=chat.id, n_ctx=8192))
        assert fitted.mode == "retrieved" and fitted.messages[-1].images == (RED, BLUE)
        text = sum(len(m.content) for m in fitted.messages) / 3.0
        assert text + 2 * 2048 + 8192 // 4 <= 8192
    finally:
        hearth.close()
