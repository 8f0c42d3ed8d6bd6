"""Images on an M-RoPE model (Qwen2-VL): a random-weight pair through the real engine.

With M-RoPE an image of nx x ny embeddings takes max(nx, ny) positions, not nx * ny: its KV
cells all sit at the image's first (temporal) position, and the text after it starts
max(nx, ny) later, as mtmd, llama-server and HF place it. The engine's prompt holds one
pseudo-token per position an image takes (image_prompt.py), so a prompt index is a KV position
here too. These tests hold the engine to llama.cpp's own path (``mtmd_helper_eval_chunks`` on
a plain context, tests/engine/mtmd_reference.py): same prompt layout, same logits, same
greedy text, on a first turn, a follow-up that reuses the cache, and beside another stream.
A reference that puts the text at n_past + n_tokens instead shows the check would catch it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import llama_cpp as C
import numpy as np
import pytest
from PIL import Image

from backend.engine.engine import Engine
from backend.engine.image_decode import DecodedImage
from backend.engine.slot import Slot
from backend.engine.state import LoadedState
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ImageInput,
    LoadPlan,
    SamplingParams,
    TextDelta,
)
from backend.engine.vision import ImageChunk, MediaChunks, VisionContext
from backend.library.local import LocalModel
from tests.engine.mtmd_reference import MtmdReference
from tests.engine.test_vision_engine import collect as collect_events
from tests.fixtures.synth_qwen2vl import write_pair

GREEDY = SamplingParams(temperature=0.0)
N_CTX = 1024
T = TypeVar("T")
# What the engine gave mtmd to tokenize: text with its markers, and (width, height, RGB).
Prompts = list[tuple[str, list[tuple[int, int, bytes]]]]


def noise_png(size: tuple[int, int], seed: int) -> bytes:
    """An image of random pixels: each one gives the projector different embeddings."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("qwen2vl"), smollm2_path)


@pytest.fixture(scope="module")
def engine(pair: tuple[Path, Path]) -> Iterator[Engine]:
    model, projector = pair
    eng = Engine()
    info = asyncio.run(eng.load(LocalModel("qwen2vl-tiny", model, "builtin"),
                                LoadPlan(n_ctx=N_CTX, n_parallel=2, n_threads=2,
                                         mmproj_path=str(projector))))
    assert info.vision
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference(pair: tuple[Path, Path], engine: Engine) -> Iterator[MtmdReference]:
    model, projector = pair
    ref = MtmdReference(model, projector, marker=vision_of(engine).marker, n_ctx=N_CTX,
                        n_batch=512)
    yield ref
    ref.close()


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> Prompts:
    """The texts (with the engine's media markers) and pixels the engine gives mtmd to
    tokenize, so the reference reads exactly the same prompt."""
    seen: Prompts = []
    tokenize = VisionContext.tokenize

    def recording(self: VisionContext, text: str,
                  images: list[tuple[DecodedImage, str]]) -> MediaChunks:
        seen.append((text, [(d.width, d.height, bytes(d.rgb)) for d, _ in images]))
        return tokenize(self, text, images)

    monkeypatch.setattr(VisionContext, "tokenize", recording)
    return seen


def vision_of(engine: Engine) -> VisionContext:
    state = engine._scheduler.state
    assert state is not None and state.vision is not None
    return state.vision


def ask(text: str, *images: bytes, history: tuple[ChatMessage, ...] = (),
        max_tokens: int = 12) -> GenerationRequest:
    message = ChatMessage("user", text,
                          images=tuple(ImageInput(d, "image/png") for d in images))
    return GenerationRequest(messages=(*history, message), max_tokens=max_tokens,
                             sampling=GREEDY)


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, Finished]:
    text, final = await collect_events(engine, request)
    assert final.finish_reason in ("stop", "length"), final.error
    return text, final


def on_engine(engine: Engine, fn: Callable[[LoadedState], T]) -> T:
    """Run ``fn(state)`` on the engine thread (between steps: nothing else touches it)."""
    state = engine._scheduler.state
    assert state is not None
    return engine._scheduler.call(lambda: fn(state)).result(timeout=30)


def last_slot(state: LoadedState) -> Slot:
    return max(state.slots, key=lambda s: s.last_used)


def test_the_pair_loads_with_mrope_and_an_image_takes_fewer_positions_than_cells(
        engine: Engine) -> None:
    from backend.engine.prepare import prepare_prompt

    vision = vision_of(engine)
    assert vision.mrope
    state = engine._scheduler.state
    assert state is not None
    # 96 x 64 pixels in 8-pixel patches, merged 2 x 2: a 6 x 4 grid of embeddings.
    prepared = prepare_prompt(state, ask("Look", noise_png((96, 64), 1)))
    (span,) = prepared.images.spans
    assert (span.image.n_tokens, span.image.n_pos) == (24, 6)
    assert prepared.tokens[span.start:span.end] == [t for t in prepared.tokens if t < 0]
    assert prepared.images.extra_cells == 18


def test_text_after_an_image_sits_where_mtmd_puts_it(
        engine: Engine, reference: MtmdReference, prompts: Prompts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[tuple[int, int, int, int]] = []
    decode = VisionContext.decode

    def recording(self: VisionContext, lctx: int, image: ImageChunk, embd: np.ndarray,
                  n_past: int, seq_id: int, n_batch: int) -> int:
        next_pos = decode(self, lctx, image, embd, n_past, seq_id, n_batch)
        memory = C.llama_get_memory(lctx)  # on the engine thread, right after the decode
        decoded.append((n_past, next_pos, image.n_pos,
                        C.llama_memory_seq_pos_max(memory, seq_id)))
        return next_pos

    monkeypatch.setattr(VisionContext, "decode", recording)
    _, final = asyncio.run(collect(engine, ask("What is this?", noise_png((96, 64), 2),
                                               max_tokens=1)))
    # The image's 24 cells all sit at its first (temporal) position; the next position is
    # n_past + n_pos (6), not n_past + 24.
    ((n_past, next_pos, n_pos, image_pos_max),) = decoded
    assert (next_pos, image_pos_max) == (n_past + n_pos, n_past)

    def read(state: LoadedState) -> tuple[list[int], int, np.ndarray]:
        slot = last_slot(state)
        logits = C.llama_get_logits_ith(state.ctx.ptr, -1)
        return (list(slot.cached), C.llama_memory_seq_pos_max(state.ctx.memory, slot.seq_id),
                np.ctypeslib.as_array(logits, shape=(state.model.n_vocab,)).copy())

    cached, pos_max, logits = on_engine(engine, read)
    text, images = prompts[-1]
    ref = reference.run(text, images, 1)
    assert ref.n_tokens > ref.n_pos  # the image's cells outnumber its positions
    # The same layout as mtmd's: text tokens, then one entry per position of the image…
    assert [t if t >= 0 else -1 for t in cached] == ref.prompt_tokens
    assert final.usage.prompt_tokens == ref.n_pos
    # …and the prompt's last token at mtmd's last position (n_past + n_pos after the image,
    # then one per text token), not n_tokens - n_pos further on.
    assert pos_max == ref.n_pos - 1
    np.testing.assert_allclose(logits, ref.first_logits, atol=1e-3)
    # Text placed after the image's cell count instead reads differently: the check above
    # would catch it.
    wrong = reference.run(text, images, 1, wrong_positions=True)
    assert np.abs(wrong.first_logits - ref.first_logits).max() > 0.5


def test_greedy_reply_with_two_images_equals_llama_cpps(
        engine: Engine, reference: MtmdReference, prompts: Prompts) -> None:
    request = ask("Compare them.", noise_png((96, 64), 3), noise_png((48, 80), 4))
    reply, final = asyncio.run(collect(engine, request))
    text, images = prompts[-1]
    ref = reference.run(text, images, 12)
    assert reply == reference.text(ref.tokens)
    assert final.usage.prompt_tokens == ref.n_pos


def test_follow_up_reuses_the_image_in_the_cache_and_still_equals_llama_cpps(
        engine: Engine, reference: MtmdReference, prompts: Prompts) -> None:
    vision, cache = vision_of(engine), engine._scheduler.images.cache
    first_q = ask("Describe it.", noise_png((64, 96), 5))
    reply, first = asyncio.run(collect(engine, first_q))
    encoded, hits = vision.n_encoded, cache.hits
    history = (*(first_q.messages or ()), ChatMessage("assistant", reply))
    # Tokenized whole by mtmd (not the chunks kept from the last turn), so the reference
    # can read the very same text; the KV cells are what this is about.
    on_engine(engine, lambda state: vision.recent.clear())
    second_reply, second = asyncio.run(collect(engine, ask("And the colours?",
                                                           history=history)))
    assert vision.n_encoded == encoded  # not encoded again…
    assert cache.hits == hits  # …nor decoded again: its KV cells were reused
    image = next(p for p in vision.recent[0].media.pieces if isinstance(p, ImageChunk))
    assert second.usage.cached_prompt_tokens > image.n_tokens > image.n_pos
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 1
    text, images = prompts[-1]
    ref = reference.run(text, images, 12)
    assert second_reply == reference.text(ref.tokens)


def test_an_image_request_beside_a_text_stream_in_another_slot(
        engine: Engine, reference: MtmdReference, prompts: Prompts) -> None:
    async def run() -> tuple[tuple[str, Finished], bool, tuple[str, Finished]]:
        text = asyncio.create_task(collect(engine, ask("Tell me about rivers.",
                                                       max_tokens=400)))
        await asyncio.sleep(0)
        image = await collect(engine, ask("What now?", noise_png((80, 48), 6)))
        return image, text.done(), await text

    (reply, _), story_done_first, (story, story_final) = asyncio.run(run())
    assert not story_done_first  # the image was read and answered while the story streamed
    assert story_final.usage.completion_tokens >= 1 and story
    text, images = next(p for p in prompts if p[1])
    ref = reference.run(text, images, 12)
    assert reply == reference.text(ref.tokens)


def test_the_same_image_in_another_slot_borrows_its_cells(
        engine: Engine, reference: MtmdReference, prompts: Prompts) -> None:
    """A second chat about the same image while the first still streams: the cached prefix
    (image cells included) is copied from the busy slot, and the text after it still sits
    at mtmd's positions."""
    vision = vision_of(engine)
    image = noise_png((64, 112), 7)

    async def run() -> tuple[str, Finished, int]:
        streaming = asyncio.Event()

        async def first() -> None:
            async for event in engine.generate(ask("Which way is up?", image,
                                                   max_tokens=400)):
                if isinstance(event, TextDelta):
                    streaming.set()

        task = asyncio.create_task(first())
        await streaming.wait()
        encoded = vision.n_encoded
        reply, final = await collect(engine, ask("Which way is up?", image))
        await task
        return reply, final, vision.n_encoded - encoded

    reply, final, encodes = asyncio.run(run())
    assert encodes == 0
    assert final.usage.cached_prompt_tokens == final.usage.prompt_tokens - 1
    text, images = prompts[-1]
    ref = reference.run(text, images, 12)
    assert reply == reference.text(ref.tokens)


def test_drafts_are_checked_and_rolled_back_on_the_mrope_model(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Speculation stays on for text on an M-RoPE model (a text prompt's positions are
    contiguous; only image prompts switch it off, on every model): drafts that are partly
    right are accepted up to the first wrong token, the rest removed from the cache with
    llama_memory_seq_rm, and the greedy reply is the one without drafts."""
    from backend.engine import scheduler as scheduler_module
    from backend.engine.ngram import NgramDraft, NgramIndex
    from backend.engine.types import SpeculationParams

    produced: list[int] = []
    on_token = scheduler_module.on_token

    def recording(state: LoadedState, slot: Slot, token: int, now: float) -> None:
        produced.append(token)
        on_token(state, slot, token, now)

    base = ask("one two three four five six seven eight nine ten", max_tokens=24)
    with monkeypatch.context() as m:
        m.setattr(scheduler_module, "on_token", recording)
        plain, _ = asyncio.run(collect(engine, dataclasses.replace(
            base, speculation=SpeculationParams(mode="off"))))
    # The model is random and never repeats itself, so the n-gram drafter would find
    # nothing: it is given the plain reply's next tokens instead, the last one spoilt.
    prompt_len: dict[int, int] = {}
    init = NgramIndex.__init__

    def remember(self: NgramIndex, tokens: list[int]) -> None:
        init(self, tokens)
        prompt_len[id(self)] = len(tokens)

    def oracle(self: NgramIndex, limit: int) -> NgramDraft | None:
        done = len(self.tokens) - prompt_len[id(self)]  # reply tokens known, the next too
        guess = produced[done:done + limit]
        if len(guess) > 1:
            guess[-1] = guess[-1] + 1
        return NgramDraft(guess, 8) if guess else None

    monkeypatch.setattr(NgramIndex, "__init__", remember)
    monkeypatch.setattr(NgramIndex, "lookup", oracle)
    drafted, final = asyncio.run(collect(engine, dataclasses.replace(
        base, speculation=SpeculationParams(mode="ngram", n_max=4, n_min=4))))
    assert drafted == plain
    assert final.usage.draft_accepted > 0
    assert final.usage.draft_tokens > final.usage.draft_accepted  # some rolled back
