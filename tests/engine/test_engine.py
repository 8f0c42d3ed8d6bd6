"""The engine against real GGUF models through llama.cpp: no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    OverflowPolicy,
    SamplingParams,
    TextDelta,
)
from backend.errors import ContextTooLong, ModelNotLoaded, TemplateError
from backend.library.local import LocalModel

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0.0)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    eng = Engine()
    run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                 LoadPlan(n_ctx=2048, n_parallel=2, n_threads=2)))
    yield eng
    eng.close()


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, Finished]:
    parts: list[str] = []
    final: Finished | None = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            assert final is None, "no text after the final event"
            parts.append(event.text)
        else:
            final = event
    assert final is not None
    return "".join(parts), final


def chat(text: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", text),), **kw)  # type: ignore[arg-type]


def test_streams_a_reply_from_a_real_chat_model(engine: Engine) -> None:
    text, final = run(collect(engine, chat("What is the capital of France?", max_tokens=40,
                                           sampling=GREEDY)))
    assert text.strip(), "the reply is empty"
    assert final.finish_reason in ("stop", "length")
    u = final.usage
    assert u.prompt_tokens > 5 and u.completion_tokens > 0
    assert u.time_to_first_token_s > 0 and u.decode_tokens_per_s > 0


def test_max_tokens_is_exact(engine: Engine) -> None:
    request = GenerationRequest(prompt="Once upon a time", max_tokens=7,
                                sampling=SamplingParams(temperature=0.7, seed=1))
    _, final = run(collect(engine, request))
    assert final.finish_reason == "length"
    assert final.usage.completion_tokens == 7


def test_same_seed_gives_the_same_text(engine: Engine) -> None:
    def once(seed: int) -> str:
        request = chat("Tell me a story about a dragon.", max_tokens=30,
                       sampling=SamplingParams(temperature=1.0, seed=seed))
        return run(collect(engine, request))[0]

    assert once(42) == once(42)
    assert {once(1), once(2), once(3)} != {once(42)}


def test_stop_string_ends_the_reply_and_is_never_emitted(engine: Engine) -> None:
    base, _ = run(collect(engine, chat("Count from 1 to 20, separated by commas.",
                                       max_tokens=60, sampling=GREEDY)))
    assert "5" in base, base
    stop = base[base.index("5"):base.index("5") + 2]  # e.g. "5," split across tokens maybe
    deltas: list[str] = []

    async def go() -> Finished:
        final = None
        async for event in engine.generate(chat("Count from 1 to 20, separated by commas.",
                                                max_tokens=60, sampling=GREEDY,
                                                stop=(stop,))):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            else:
                final = event
        assert final is not None
        return final

    final = run(go())
    text = "".join(deltas)
    assert final.finish_reason == "stop"
    assert text == base[:base.index(stop)]
    assert all(stop not in d for d in deltas)


def test_cancel_stops_within_one_decode_step(engine: Engine) -> None:
    async def go() -> tuple[int, Finished]:
        request = GenerationRequest(prompt="Write a long essay about rivers.", max_tokens=500,
                                    sampling=GREEDY)
        n = 0
        final = None
        async for event in engine.generate(request):
            if isinstance(event, TextDelta):
                n += 1
                if n == 5:
                    assert engine.cancel(request.request_id)
            else:
                final = event
        assert final is not None
        return n, final

    n, final = run(go())
    assert final.finish_reason == "cancelled"
    # The cancel lands between steps: at most the token in flight follows it.
    assert final.usage.completion_tokens <= 7
    assert n <= 7


def test_closing_the_stream_early_frees_the_engine(engine: Engine) -> None:
    async def go() -> str:
        request = GenerationRequest(prompt="Write a long essay about mountains.",
                                    max_tokens=400, sampling=GREEDY)
        stream = engine.generate(request)
        async for _event in stream:
            break
        await stream.aclose()
        _text, final = await collect(engine, chat("Say hi.", max_tokens=5, sampling=GREEDY))
        return final.finish_reason

    assert run(go()) in ("stop", "length")


def test_two_concurrent_requests_both_complete_correctly(engine: Engine) -> None:
    a = chat("What is the capital of France?", max_tokens=24, sampling=GREEDY)
    b = chat("Name three colours.", max_tokens=24, sampling=GREEDY)
    alone_a = run(collect(engine, a))[0]
    alone_b = run(collect(engine, b))[0]

    async def together() -> tuple[str, str]:
        ra, rb = await asyncio.gather(
            collect(engine, chat("What is the capital of France?", max_tokens=24,
                                 sampling=GREEDY)),
            collect(engine, chat("Name three colours.", max_tokens=24, sampling=GREEDY)))
        return ra[0], rb[0]

    got_a, got_b = run(together())
    assert (got_a, got_b) == (alone_a, alone_b)


def test_follow_up_turn_reuses_the_cached_prefix(engine: Engine) -> None:
    history = [ChatMessage("system", "You are a helpful assistant. " * 20),
               ChatMessage("user", "Tell me about the moon.")]
    reply, first = run(collect(engine, GenerationRequest(messages=tuple(history),
                                                         max_tokens=30, sampling=GREEDY)))
    history += [ChatMessage("assistant", reply), ChatMessage("user", "And the sun?")]
    _, second = run(collect(engine, GenerationRequest(messages=tuple(history), max_tokens=10,
                                                      sampling=GREEDY)))
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 1
    assert second.usage.cached_prompt_tokens < second.usage.prompt_tokens


def _long_history(turns: int) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "Answer briefly.")]
    for i in range(turns):
        msgs.append(ChatMessage("user", f"Question {i}: " + "tell me about the sea " * 12))
        msgs.append(ChatMessage("assistant", f"Answer {i}: " + "the sea is large " * 12))
    msgs.append(ChatMessage("user", "Last question: what colour is the sky?"))
    return msgs


def test_overflow_stop_refuses_and_says_by_how_much(engine: Engine) -> None:
    request = GenerationRequest(messages=tuple(_long_history(40)), max_tokens=16,
                                overflow=OverflowPolicy.STOP)
    with pytest.raises(ContextTooLong) as info:
        run(collect(engine, request))
    assert "over" in info.value.user_message


@pytest.mark.parametrize("policy", [OverflowPolicy.TRUNCATE_MIDDLE,
                                    OverflowPolicy.ROLLING_WINDOW])
def test_overflow_policies_drop_messages_and_say_how_many(engine: Engine,
                                                          policy: OverflowPolicy) -> None:
    request = GenerationRequest(messages=tuple(_long_history(40)), max_tokens=16,
                                overflow=policy, sampling=GREEDY)
    _text, final = run(collect(engine, request))
    assert final.usage.messages_dropped > 0
    assert final.usage.prompt_tokens <= 2048 - 16
    assert final.finish_reason in ("stop", "length")


def test_raw_prompt_overflow_keeps_the_tail(engine: Engine) -> None:
    request = GenerationRequest(prompt="word " * 5000, max_tokens=4, sampling=GREEDY,
                                overflow=OverflowPolicy.ROLLING_WINDOW)
    _, final = run(collect(engine, request))
    assert final.usage.prompt_tokens <= 2048 - 4


def test_grammar_constrains_the_output(engine: Engine) -> None:
    grammar = 'root ::= ("yes" | "no") "."'
    text, _final = run(collect(engine, chat("Is the sky blue?", grammar=grammar,
                                           max_tokens=10, sampling=GREEDY)))
    assert text in ("yes.", "no."), text


def test_sandbox_escape_in_a_template_override_is_refused(smollm2_path: Path) -> None:
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    eng = Engine()
    try:
        run(eng.load(LocalModel("x", smollm2_path, "file"),
                     LoadPlan(n_ctx=256, n_threads=2, chat_template_override=payload)))
        with pytest.raises(TemplateError) as info:
            run(collect(eng, chat("hi", max_tokens=2)))
        assert "sandbox" in info.value.user_message.lower()
    finally:
        eng.close()


def test_generate_without_a_model_says_load_one_first() -> None:
    eng = Engine()
    try:
        with pytest.raises(ModelNotLoaded):
            run(collect(eng, chat("hi", max_tokens=2)))
    finally:
        eng.close()


def test_gemma_base_model_generates(gemma_path: Path) -> None:
    eng = Engine()
    try:
        info = run(eng.load(LocalModel("gemma3:270m", gemma_path, "file"),
                            LoadPlan(n_ctx=512, n_threads=2)))
        assert info.n_layer > 0
        text, final = run(collect(eng, GenerationRequest(
            prompt="The capital of France is", max_tokens=8, sampling=GREEDY)))
        assert text.strip() and final.usage.completion_tokens == 8
    finally:
        eng.close()


def test_same_seed_same_text_without_flash_attention(smollm2_path: Path) -> None:
    # The planner turns flash attention off for narrow heads on a CPU; there a token computed
    # alone rounds differently from one inside a batch, and the repeat reuses the cached prompt.
    eng = Engine()
    try:
        run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                     LoadPlan(n_ctx=1024, n_threads=2, flash_attn=False)))
        request = chat("Write a word.", max_tokens=6,
                       sampling=SamplingParams(temperature=1.5, seed=1234))
        texts = {run(collect(eng, request))[0] for _ in range(3)}
        assert len(texts) == 1, texts
    finally:
        eng.close()


def test_prompt_progress_is_reported_only_when_asked(smollm2_path: Path) -> None:
    """A front end that shows "reading your prompt" asks for PromptProgress events: one when
    the request starts (the cached part), then one per step that read more, before any text.
    Requests that don't ask never see one (the API routes expect text and an end only)."""
    from backend.engine.types import PromptProgress

    engine = Engine()
    long_prompt = "Summarise this. " + "The quick brown fox jumps over the lazy dog. " * 60

    async def run(report: bool) -> list[object]:
        request = GenerationRequest(prompt=long_prompt, max_tokens=2, report_progress=report,
                                    sampling=SamplingParams(temperature=0))
        return [event async for event in engine.generate(request)]

    try:
        asyncio.run(engine.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                                LoadPlan(n_ctx=2048, n_threads=2, n_batch=128, n_ubatch=128)))
        events = asyncio.run(run(True))
        progress = [e for e in events if isinstance(e, PromptProgress)]
        first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
        assert len(progress) >= 3 and all(isinstance(e, PromptProgress)
                                          for e in events[:len(progress)])
        assert first_text == len(progress)  # all of it before the reply's first text
        assert progress[0].done == 0 and progress[-1].done == progress[-1].total > 500
        assert [p.done for p in progress] == sorted(p.done for p in progress)
        again = asyncio.run(run(True))  # the same prompt: found in the cache at once
        assert isinstance(again[0], PromptProgress) and again[0].done == again[0].total - 1
        assert not [e for e in asyncio.run(run(False)) if isinstance(e, PromptProgress)]
    finally:
        engine.close()
