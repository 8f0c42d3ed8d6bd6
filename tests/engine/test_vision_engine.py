"""Images through the engine: SmolLM2 with a random-weight LLaVA-style projector.

The projector's weights are noise, so the replies are nonsense; these tests check what the
engine does with images: tokens and positions, the prompt cache (a follow-up turn does not
encode the image again), batching beside text requests, and typed errors for bad input that
end one request while the others carry on.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from backend.engine.engine import Engine
from backend.engine.image_prompt import ImageSpans, image_token_ids
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ImageInput,
    LoadPlan,
    SamplingParams,
    TextDelta,
)
from backend.errors import ImageRejected, ModelLoadFailed, VisionUnsupported
from backend.library.local import LocalModel
from tests.fixtures.synth_mmproj import ProjectorShape, write_projector

GREEDY = SamplingParams(temperature=0.0)
IMAGE_TOKENS = ProjectorShape().n_patches  # 16: a 64-px image in 16-px patches


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (80, 60),
        fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_projector(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny.gguf",
                           ProjectorShape())


@pytest.fixture(scope="module")
def engine(smollm2_path: Path, projector: Path) -> Iterator[Engine]:
    eng = Engine()
    info = asyncio.run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                                LoadPlan(n_ctx=1024, n_parallel=3, n_threads=2,
                                         mmproj_path=str(projector))))
    assert info.vision
    yield eng
    eng.close()


def ask(text: str, *images: bytes, history: tuple[ChatMessage, ...] = (),
        max_tokens: int = 8) -> GenerationRequest:
    message = ChatMessage("user", text, images=tuple(ImageInput(d, "image/png") for d in images))
    return GenerationRequest(messages=(*history, message), max_tokens=max_tokens,
                             sampling=GREEDY)


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, Finished]:
    parts: list[str] = []
    final = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Finished):
            final = event
    assert final is not None
    return "".join(parts), final


def vision_of(engine: Engine):  # type: ignore[no-untyped-def]
    state = engine._scheduler.state
    assert state is not None and state.vision is not None
    return state.vision


def test_image_prompt_counts_image_tokens_and_a_reply_streams(engine: Engine) -> None:
    vision = vision_of(engine)
    before = vision.n_encoded
    _, final = asyncio.run(collect(engine, ask("What is in this picture?", png())))
    assert final.finish_reason in ("stop", "length"), final.error
    assert final.usage.completion_tokens >= 1
    assert vision.n_encoded == before + 1
    _, text_only = asyncio.run(collect(engine, ask("What is in this picture?")))
    # The image adds its 16 embeddings (plus the marker's newline) to the same chat.
    extra = final.usage.prompt_tokens - text_only.usage.prompt_tokens
    assert IMAGE_TOKENS <= extra <= IMAGE_TOKENS + 2


def test_follow_up_about_the_same_image_hits_the_cache_without_encoding(engine: Engine
                                                                        ) -> None:
    vision, cache = vision_of(engine), engine._scheduler.images.cache
    image = png((10, 120, 240))
    first_q = ask("Describe the colours.", image, max_tokens=6)
    reply, first = asyncio.run(collect(engine, first_q))
    encoded, hits = vision.n_encoded, cache.hits
    history = (*(first_q.messages or ()), ChatMessage("assistant", reply))
    _, second = asyncio.run(collect(engine, ask("And the shapes?", history=history)))
    assert second.finish_reason in ("stop", "length"), second.error
    assert vision.n_encoded == encoded  # the image was not encoded again…
    assert cache.hits == hits  # …nor even decoded again: its KV cells were reused
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 1


def test_two_image_requests_and_a_text_request_batch_together(engine: Engine) -> None:
    async def run() -> list[Finished]:
        results = await asyncio.gather(
            collect(engine, ask("First image?", png((1, 2, 3)), max_tokens=12)),
            collect(engine, ask("Second image?", png((250, 250, 0), (300, 200)),
                                max_tokens=12)),
            collect(engine, ask("Tell me about rivers.", max_tokens=12)))
        return [final for _, final in results]

    for final in asyncio.run(run()):
        assert final.finish_reason in ("stop", "length"), final.error
        assert final.usage.completion_tokens >= 1


def test_cache_match_never_ends_inside_an_image() -> None:
    from backend.engine.image_prompt import ImageSpan
    from backend.engine.vision import ImageChunk

    chunk = ImageChunk(0, "ab" * 32, n_tokens=16, n_pos=16)
    spans = ImageSpans((ImageSpan(5, chunk),))
    assert spans.retreat(4) == 4
    assert spans.retreat(5) == 5
    assert spans.retreat(6) == 5
    assert spans.retreat(20) == 5
    assert spans.retreat(21) == 21
    ids = image_token_ids("ab" * 32, 16)
    assert len(set(ids)) == 16 and all(i < 0 for i in ids)
    assert not set(ids) & set(image_token_ids("cd" * 32, 16))


@pytest.mark.parametrize(("data", "words"), [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "damaged"),  # corrupt
    (png()[:60], "damaged"),  # truncated PNG
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
    (b"hello, not an image", "not an image"),
    (b"\x00" * (21 * 1024 * 1024), "MB"),  # too many bytes
])
def test_bad_images_fail_alone_while_another_stream_runs(engine: Engine, data: bytes,
                                                         words: str) -> None:
    async def run() -> tuple[BaseException | None, Finished]:
        good = asyncio.create_task(collect(engine, ask("A story about a fox.", max_tokens=16)))
        error = None
        try:
            await collect(engine, ask("What is this?", data))
        except ImageRejected as exc:
            error = exc
        _, final = await good
        return error, final

    error, final = asyncio.run(run())
    assert isinstance(error, ImageRejected) and words in error.user_message
    assert final.finish_reason in ("stop", "length")


def test_huge_dimensions_are_refused_from_the_header(engine: Engine) -> None:
    # A real 20,000 x 20,000 PNG: a small file (one colour compresses well) whose pixels
    # would take 1.2 GB; refused before a pixel is decoded.
    data = huge_png(20_000, 20_000)
    with pytest.raises(ImageRejected, match="megapixels"):
        asyncio.run(collect(engine, ask("Look", data)))
    _, final = asyncio.run(collect(engine, ask("Still there?", png())))
    assert final.finish_reason in ("stop", "length")


def huge_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # Only the first rows' data: the header alone must be enough to refuse it.
    rows = zlib.compress(b"\x00" + b"\x00" * (width * 3))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF"])
def test_other_formats_are_read(engine: Engine, fmt: str) -> None:
    _, final = asyncio.run(collect(engine, ask("Look", png((40, 200, 90), (500, 333), fmt))))
    assert final.finish_reason in ("stop", "length"), final.error


def test_too_many_images_are_refused(engine: Engine) -> None:
    with pytest.raises(ImageRejected, match="at most"):
        asyncio.run(collect(engine, ask("Many", *[png((i, i, i)) for i in range(17)])))


def test_non_causal_image_larger_than_the_micro_batch_is_refused(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Gemma 3's projector reads an image with bidirectional attention: llama.cpp aborts the
    # process if the image's tokens don't fit one micro-batch. Here the micro-batch (512)
    # holds the image, so pretend it is non-causal and the micro-batch small.
    from backend.engine import native

    state = engine._scheduler.state
    assert state is not None
    small = native.ContextConfig(**{**state.ctx.config.__dict__, "n_ubatch": 8})
    monkeypatch.setattr(state.ctx, "config", small)
    monkeypatch.setattr(type(state.vision), "non_causal", lambda self, image: True)
    with pytest.raises(ImageRejected, match="reads in one step"):
        asyncio.run(collect(engine, ask("Look", png((3, 3, 3)))))
    # The engine thread checks again before it decodes (whatever changed since the prompt
    # was made): the request ends with the error, the process lives on.
    from backend.engine import image_prompt

    monkeypatch.setattr(image_prompt, "_check_batch_fits", lambda *args: None)
    _, final = asyncio.run(collect(engine, ask("Look", png((4, 4, 4)))))
    assert final.finish_reason == "error"
    assert isinstance(final.error, ImageRejected)


def test_images_to_a_model_without_a_projector_are_refused(smollm2_path: Path) -> None:
    eng = Engine()
    try:
        asyncio.run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                             LoadPlan(n_ctx=512, n_threads=2)))
        assert not eng.loaded.vision  # type: ignore[union-attr]
        with pytest.raises(VisionUnsupported):
            asyncio.run(collect(eng, ask("Look", png())))
        _, final = asyncio.run(collect(eng, ask("Hello")))
        assert final.finish_reason in ("stop", "length")
    finally:
        eng.close()


@pytest.mark.parametrize("kind", ["mlp", "gemma3"])
def test_projector_for_another_model_fails_the_load_and_keeps_the_old_one(
        smollm2_path: Path, projector: Path, tmp_path: Path, kind: str) -> None:
    """A LLaVA-style projector, or any other kind (Gemma 3's here, header only): its width is
    checked from the header, so the working model is not unloaded for a projector that can't
    pair with it."""
    from tests.library.projectors import write_projector as write_header_only

    wrong = (write_projector(tmp_path / "mmproj-640.gguf", ProjectorShape(out_embd=640))
             if kind == "mlp" else
             write_header_only(tmp_path / "mmproj-gemma3.gguf", 640, kind=kind.encode()))
    eng = Engine()
    try:
        model = LocalModel("smollm2:135m", smollm2_path, "builtin")
        asyncio.run(eng.load(model, LoadPlan(n_ctx=512, n_threads=2,
                                             mmproj_path=str(projector))))
        with pytest.raises(ModelLoadFailed, match="640"):
            asyncio.run(eng.load(model, LoadPlan(n_ctx=512, n_threads=2,
                                                 mmproj_path=str(wrong))))
        assert eng.loaded is not None and eng.loaded.vision
        _, final = asyncio.run(collect(eng, ask("Look", png())))
        assert final.finish_reason in ("stop", "length"), final.error
    finally:
        eng.close()


def test_same_image_after_other_text_reuses_its_embeddings(engine: Engine) -> None:
    vision, cache = vision_of(engine), engine._scheduler.images.cache
    image = png((77, 7, 177))
    asyncio.run(collect(engine, ask("Colours?", image, max_tokens=2)))
    encoded, hits = vision.n_encoded, cache.hits
    # Another system prompt before it: the KV cache can't be reused, the embeddings can.
    system = (ChatMessage("system", "You are terse."),)
    _, final = asyncio.run(collect(engine, ask("Shapes?", image, history=system,
                                               max_tokens=2)))
    assert final.finish_reason in ("stop", "length"), final.error
    assert vision.n_encoded == encoded
    assert cache.hits == hits + 1


def test_follow_up_prompt_reuses_image_chunks_and_equals_a_full_tokenize(engine: Engine
                                                                         ) -> None:
    from backend.engine.prepare import prepare_prompt

    state = engine._scheduler.state
    assert state is not None and state.vision is not None
    vision = state.vision
    first = ask("Describe it.", png((5, 50, 150)), png((150, 50, 5)))
    prepare_prompt(state, first)
    history = (*(first.messages or ()), ChatMessage("assistant", "Two <squares>, blue & red."))
    follow = ask("Which is bigger?", history=history)
    n = vision.n_tokenized
    reused = prepare_prompt(state, follow)
    assert vision.n_tokenized == n  # neither decoded nor tokenized by mtmd again
    vision.recent.clear()
    full = prepare_prompt(state, follow)
    assert vision.n_tokenized == n + 1
    assert reused.tokens == full.tokens
    assert [s.start for s in reused.images.spans] == [s.start for s in full.images.spans]
