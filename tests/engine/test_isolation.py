"""One request can only fail itself: whatever breaks while a request is prepared, started,
sampled or detokenized ends that request alone, with a typed error, and frees its slot; the
streams sharing its batch finish exactly as they would have alone.

These go under the API's validation on purpose (the GUI and the CLI build requests too), and
fault injection reaches the places no input can (a sampler that raises mid-reply).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine import chains as chains_module
from backend.engine import scheduler as scheduler_module
from backend.engine.engine import Engine
from backend.engine.sampler import NativeSampler
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    SamplingParams,
    TextDelta,
)
from backend.errors import BackendError, GenerationFailed, InvalidRequest, TemplateError
from backend.library.local import LocalModel

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    eng = Engine()
    asyncio.run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                         LoadPlan(n_ctx=512, n_parallel=3, n_threads=2)))
    yield eng
    eng.close()


def story(topic: str, tokens: int = 48, **kw: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "messages": (ChatMessage("user", f"Write a story about a {topic}."),),
        "max_tokens": tokens, "sampling": GREEDY, **kw}
    return GenerationRequest(**fields)


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, Finished]:
    parts: list[str] = []
    final = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            final = event
    assert final is not None
    return "".join(parts), final


async def outcome(engine: Engine, request: GenerationRequest) -> BackendError | Finished:
    """The request's end: the error it was refused with, or its Finished event."""
    try:
        _, final = await collect(engine, request)
    except BackendError as exc:
        return exc
    return final


BAD_REQUESTS: dict[str, GenerationRequest] = {
    "lone surrogate in a message": story("ship", messages=(
        ChatMessage("user", "tell me about \ud800 please"),)),
    "lone surrogate in a raw prompt": GenerationRequest(prompt="x \udfff y", max_tokens=4),
    "lone surrogate in a tool": story("ship", tools=({"type": "function", "function": {
        "name": "f\udc80", "parameters": {}}},), chat_template=(
            "{{ tools | tojson }}{% for m in messages %}{{ m.content }}{% endfor %}")),
    "top_k 2**63": story("ship", sampling=SamplingParams(top_k=2**63)),
    "repeat_last_n 2**63": story("ship", sampling=SamplingParams(repeat_last_n=2**63,
                                                                 repeat_penalty=1.1)),
    "temperature NaN": story("ship", sampling=SamplingParams(temperature=float("nan"))),
    "top_p infinite": story("ship", sampling=SamplingParams(top_p=float("inf"))),
    "max_tokens 0": story("ship", tokens=0),
    "a broken template": story("ship", chat_template="{% for %}"),
    "a template that raises": story("ship", chat_template="{{ raise_exception('no') }}"),
    "an invalid grammar": story("ship", grammar="root ::= ("),
    "no messages": GenerationRequest(messages=(), max_tokens=4),
}


@pytest.fixture(scope="module")
def solo(engine: Engine) -> list[str]:
    """What the two streams say when each runs alone."""
    return [asyncio.run(collect(engine, story(t)))[0] for t in ("cat", "dog")]


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_bad_request_fails_alone_while_two_streams_run(engine: Engine, name: str,
                                                         solo: list[str]) -> None:

    async def together() -> tuple[list[tuple[str, Finished]], BackendError | Finished]:
        streams = [asyncio.create_task(collect(engine, story(t))) for t in ("cat", "dog")]
        await asyncio.sleep(0.05)  # both are generating when the bad one arrives
        bad = await outcome(engine, BAD_REQUESTS[name])
        return [await s for s in streams], bad

    streams, bad = asyncio.run(together())
    assert isinstance(bad, InvalidRequest | TemplateError), bad
    assert bad.http_status == 400 and bad.user_message
    assert [text for text, _ in streams] == solo
    assert all(final.finish_reason == "length" and final.error is None for _, final in streams)
    assert engine.in_flight() == 0


def test_fifty_bad_requests_leave_no_queue_place_behind(engine: Engine) -> None:
    """Each failure used to keep its queue place forever: after ~70 the server was full."""
    async def run() -> list[BackendError | Finished]:
        bad = [dataclasses.replace(BAD_REQUESTS[name]) for name in BAD_REQUESTS] * 5
        return await asyncio.gather(*[outcome(engine, r) for r in bad])

    results = asyncio.run(run())
    assert all(isinstance(r, BackendError) for r in results)
    assert engine.in_flight() == 0
    text, final = asyncio.run(collect(engine, story("cat", tokens=8)))
    assert final.finish_reason == "length" and text


def test_a_sampler_failing_mid_reply_ends_only_its_own_stream(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, solo: list[str]) -> None:
    """No input reaches this: a fault injected into one request's sampler after a few tokens
    ends that request with a 500 naming it, and the batch's other streams carry on whole."""
    victim = story("robot", tokens=200)
    real_sample = NativeSampler.sample
    calls: dict[int, int] = {}

    def flaky_sample(self: NativeSampler, *args: Any, **kw: Any) -> int:
        if getattr(self, "doomed", False):
            calls[id(self)] = calls.get(id(self), 0) + 1
            if calls[id(self)] == 5:
                raise RuntimeError("injected fault")
        return real_sample(self, *args, **kw)

    real_make = chains_module.make_sampler

    def make(state: Any, request: GenerationRequest) -> NativeSampler:
        sampler = real_make(state, request)
        sampler.doomed = request.request_id == victim.request_id  # type: ignore[attr-defined]
        return sampler

    monkeypatch.setattr(NativeSampler, "sample", flaky_sample)
    monkeypatch.setattr(chains_module, "make_sampler", make)

    async def together() -> tuple[list[tuple[str, Finished]], tuple[str, Finished]]:
        streams = [asyncio.create_task(collect(engine, story(t))) for t in ("cat", "dog")]
        doomed = await collect(engine, victim)
        return [await s for s in streams], doomed

    streams, (partial, final) = asyncio.run(together())
    assert final.finish_reason == "error" and isinstance(final.error, GenerationFailed)
    assert victim.request_id in final.error.user_message
    assert final.error.http_status == 500
    assert partial  # what it said before the fault was delivered
    assert [text for text, _ in streams] == solo
    assert engine.in_flight() == 0
    monkeypatch.undo()
    again, done = asyncio.run(collect(engine, story("cat")))
    assert again == solo[0] and done.error is None  # the slot it used works as before


def test_a_failure_while_starting_frees_the_slot(engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error between leaving the queue and holding a slot (here: building the
    sampler, after a slot was chosen) is answered as a 500 naming the request; the slot is
    clean and nothing is left waiting."""
    real = chains_module.sampler_for

    def sampler_for(state: Any, slot: Any, request: GenerationRequest) -> NativeSampler:
        if request.request_id == "req-doomed":
            raise KeyError("injected")
        return real(state, slot, request)

    solo, _ = asyncio.run(collect(engine, story("tree")))
    monkeypatch.setattr(scheduler_module, "sampler_for", sampler_for)

    async def run() -> tuple[BackendError | Finished, tuple[str, Finished]]:
        bad = await outcome(engine, dataclasses.replace(story("tree"), request_id="req-doomed"))
        return bad, await collect(engine, story("tree"))

    bad, (again, fine) = asyncio.run(run())
    assert isinstance(bad, GenerationFailed) and "req-doomed" in bad.user_message
    assert again == solo and fine.error is None and engine.in_flight() == 0
