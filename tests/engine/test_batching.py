"""Many requests share one context: batched streams are exactly what each gives alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine.engine import Engine
from backend.engine.grammars import JSON_OBJECT_GRAMMAR
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    SamplingParams,
    TextDelta,
)
from backend.library.local import LocalModel

GREEDY = SamplingParams(temperature=0.0)
TOPICS = ("cat", "dog", "robot", "river", "king", "ship", "tree", "star")


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    eng = Engine()
    asyncio.run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                         LoadPlan(n_ctx=1024, n_parallel=4, n_threads=2)))
    yield eng
    eng.close()


def story(topic: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", f"Write a short story about a "
                                                           f"{topic}."),),
                             max_tokens=40, sampling=GREEDY, **kw)  # type: ignore[arg-type]


async def collect(engine: Engine, request: GenerationRequest,
                  cancel_after: int | None = None) -> tuple[str, Finished]:
    parts: list[str] = []
    final = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
            if cancel_after is not None and len(parts) == cancel_after:
                engine.cancel(request.request_id)
        else:
            final = event
    assert final is not None
    return "".join(parts), final


def test_eight_concurrent_greedy_streams_equal_their_solo_runs(engine: Engine) -> None:
    solo = [asyncio.run(collect(engine, story(t)))[0] for t in TOPICS]

    async def together() -> list[str]:
        results = await asyncio.gather(*[collect(engine, story(t)) for t in TOPICS])
        return [text for text, _ in results]

    assert asyncio.run(together()) == solo


def test_cancelling_one_stream_leaves_the_others_untouched(engine: Engine) -> None:
    solo = [asyncio.run(collect(engine, story(t)))[0] for t in TOPICS[:4]]

    async def together() -> list[tuple[str, Finished]]:
        return await asyncio.gather(
            collect(engine, story(TOPICS[0]), cancel_after=3),
            *[collect(engine, story(t)) for t in TOPICS[1:4]])

    results = asyncio.run(together())
    assert results[0][1].finish_reason == "cancelled"
    assert [text for text, _ in results[1:]] == solo[1:]


def test_a_grammar_request_and_a_free_one_batched_together_are_both_valid(
        engine: Engine) -> None:
    async def together() -> tuple[tuple[str, Finished], tuple[str, Finished]]:
        constrained = GenerationRequest(
            messages=(ChatMessage("user", "Give me a JSON object describing a cat."),),
            grammar=JSON_OBJECT_GRAMMAR, max_tokens=60, sampling=GREEDY)
        a, b = await asyncio.gather(collect(engine, constrained),
                                    collect(engine, story("lighthouse")))
        return a, b

    (json_text, json_final), (free_text, _) = asyncio.run(together())
    if json_final.finish_reason == "stop":
        assert isinstance(json.loads(json_text), dict)
    else:  # cut by max_tokens: still a valid prefix of an object
        assert json_text.lstrip().startswith("{")
    assert free_text == asyncio.run(collect(engine, story("lighthouse")))[0]


def _conversation(name: str) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "You are a helpful assistant. Answer briefly.")]
    for i in range(12):
        msgs += [ChatMessage("user", f"{name}, question {i}: what is {i} plus {i}?"),
                 ChatMessage("assistant", f"{name}: {i} plus {i} is {2 * i}. " * 3)]
    return msgs


def test_a_conversation_keeps_its_cache_while_others_use_the_other_slots(
        engine: Engine) -> None:
    def turn(messages: list[ChatMessage]) -> Finished:
        request = GenerationRequest(messages=tuple(messages), max_tokens=4, sampling=GREEDY)
        return asyncio.run(collect(engine, request))[1]

    alice = _conversation("Alice")
    first = turn([*alice, ChatMessage("user", "Alice, one more?")])
    for other in ("Bob", "Carol", "Dave"):  # 3 more conversations: 4 slots in all
        turn([*_conversation(other), ChatMessage("user", "One more?")])
    second = turn([*alice, ChatMessage("user", "Alice, one more?"),
                   ChatMessage("assistant", "Sure."), ChatMessage("user", "And then?")])
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 1

    # A fifth conversation evicts the least recently used slot: Bob's, not Alice's.
    turn([*_conversation("Erin"), ChatMessage("user", "One more?")])
    bob = turn([*_conversation("Bob"), ChatMessage("user", "One more?"),
                ChatMessage("assistant", "Ok."), ChatMessage("user", "Again?")])
    assert bob.usage.cached_prompt_tokens < bob.usage.prompt_tokens // 2


def test_a_prefix_another_slot_computed_is_shared_not_recomputed(engine: Engine) -> None:
    """Two chats with one long system prompt, started together: they land on different slots,
    yet the second finds the first's prefix (cross-slot copy) and answers exactly as alone."""
    system = ChatMessage("system", "You are a careful assistant for a shipping company. "
                         * 12)

    def ask(question: str) -> GenerationRequest:
        return GenerationRequest(messages=(system, ChatMessage("user", question)),
                                 max_tokens=24, sampling=GREEDY)

    # The reference reads the shared prefix from cache too (its own slot's, one chat after
    # the other): results with a cached prefix differ in the last bits from a prompt read in
    # one go, so that is the like-for-like comparison.
    asyncio.run(collect(engine, ask("Where is parcel 1?")))
    alone, reference = asyncio.run(collect(engine, ask("Where is parcel 7?")))
    assert reference.usage.cached_prompt_tokens > 0

    async def both() -> list[tuple[str, Finished]]:
        first = asyncio.create_task(collect(engine, ask("Where is parcel 1?")))
        await asyncio.sleep(0.3)  # the first is generating: its slot is busy, not free
        second = asyncio.create_task(collect(engine, ask("Where is parcel 7?")))
        return [await first, await second]

    (_, first), (text, second) = asyncio.run(both())
    assert text == alone
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens // 2
