"""Sampling inside llama.cpp's graph (backend sampling), forced on with a CPU model.

It is on by default only when the logits live on a GPU; here it is forced so that CI exercises
the same code path: chains attached per request and detached before they are freed, grammar
requests kept on the CPU, several sequences each with its own chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine.engine import Engine
from backend.engine.types import ChatMessage, Finished, GenerationRequest, LoadPlan, SamplingParams
from backend.library.local import LocalModel
from tests.engine.test_engine import GREEDY, chat, collect, run


def load(path: Path, backend_sampling: bool | None) -> Engine:
    eng = Engine()
    run(eng.load(LocalModel("smollm2:135m", path, "builtin"),
                 LoadPlan(n_ctx=1024, n_parallel=2, n_threads=2,
                          backend_sampling=backend_sampling)))
    return eng


@pytest.fixture(scope="module")
def on_engine(smollm2_path: Path) -> Iterator[Engine]:
    eng = load(smollm2_path, True)
    yield eng
    eng.close()


def test_auto_keeps_sampling_on_the_cpu_without_a_gpu(smollm2_path: Path) -> None:
    eng = load(smollm2_path, None)
    try:
        assert eng.loaded is not None and eng.loaded.backend_sampling is False
    finally:
        eng.close()


def test_greedy_text_equals_cpu_sampling(on_engine: Engine, smollm2_path: Path) -> None:
    assert on_engine.loaded is not None and on_engine.loaded.backend_sampling is True
    request = chat("What is the capital of France?", max_tokens=24, sampling=GREEDY)
    in_graph, final = run(collect(on_engine, request))
    cpu = load(smollm2_path, False)
    try:
        on_cpu, _ = run(collect(cpu, chat("What is the capital of France?", max_tokens=24,
                                          sampling=GREEDY)))
    finally:
        cpu.close()
    assert in_graph == on_cpu and in_graph.strip()
    assert final.usage.completion_tokens > 0


def test_same_seed_same_text_and_exact_max_tokens(on_engine: Engine) -> None:
    def once(seed: int) -> tuple[str, Finished]:
        return run(collect(on_engine, GenerationRequest(
            prompt="Once upon a time", max_tokens=12,
            sampling=SamplingParams(temperature=1.0, top_k=40, top_p=0.95, min_p=0.05,
                                    repeat_penalty=1.1, seed=seed))))

    (a, fa), (b, _) = once(7), once(7)
    assert a == b and fa.finish_reason == "length" and fa.usage.completion_tokens == 12
    assert {once(1)[0], once(2)[0], once(3)[0]} != {a}


def test_grammar_requests_sample_on_the_cpu(on_engine: Engine) -> None:
    text, _ = run(collect(on_engine, chat("Is the sky blue?", grammar='root ::= ("yes" | "no") "."',
                                          max_tokens=10, sampling=GREEDY)))
    assert text in ("yes.", "no."), text
    # The next request attaches a chain again on the same sequence.
    after, _ = run(collect(on_engine, chat("Say hello.", max_tokens=8, sampling=GREEDY)))
    assert after.strip()


def test_concurrent_requests_each_keep_their_own_chain(on_engine: Engine) -> None:
    a = chat("What is the capital of France?", max_tokens=20, sampling=GREEDY)
    b = chat("Name three colours.", max_tokens=20, sampling=GREEDY)
    alone = [run(collect(on_engine, a))[0], run(collect(on_engine, b))[0]]

    async def together() -> list[str]:
        results = await asyncio.gather(
            collect(on_engine, chat("What is the capital of France?", max_tokens=20,
                                    sampling=GREEDY)),
            collect(on_engine, chat("Name three colours.", max_tokens=20, sampling=GREEDY)),
            collect(on_engine, GenerationRequest(messages=(ChatMessage("user", "Hi"),),
                                                 max_tokens=6, sampling=SamplingParams(
                                                     temperature=0.9, seed=3))))
        return [r[0] for r in results[:2]]

    assert run(together()) == alone


def test_a_request_sampling_the_same_way_reuses_the_attached_chain(smollm2_path: Path) -> None:
    # Attaching or detaching a chain makes llama.cpp re-reserve its graph (~13 ms on a GPU):
    # the slot keeps its chain for the next request that samples the same way.
    eng = Engine()
    try:
        run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                     LoadPlan(n_ctx=512, n_parallel=1, n_threads=2, backend_sampling=True)))
        slot = eng._scheduler.state.slots[0]  # type: ignore[union-attr]
        run(collect(eng, chat("Hi", max_tokens=3, sampling=GREEDY)))
        kept = slot.graph_sampler
        assert kept is not None and kept.attached
        run(collect(eng, chat("Hello", max_tokens=3, sampling=GREEDY)))
        assert slot.graph_sampler is kept
        run(collect(eng, chat("Hello", max_tokens=3, sampling=SamplingParams(temperature=0.5,
                                                                          seed=1))))
        assert slot.graph_sampler is not kept and slot.graph_sampler is not None
        run(collect(eng, chat("Yes or no?", grammar='root ::= "yes" | "no"', max_tokens=3,
                              sampling=GREEDY)))
        assert slot.graph_sampler is None  # a grammar chain runs on the CPU, none attached
        run(eng.unload())
    finally:
        eng.close()


def test_idle_slots_get_the_new_chain_at_once(smollm2_path: Path) -> None:
    # One graph re-reserve covers every idle slot, so the next request sampling this way finds
    # its chain on whichever slot it lands.
    eng = Engine()
    try:
        run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                     LoadPlan(n_ctx=512, n_parallel=3, n_threads=2, backend_sampling=True)))
        slots = eng._scheduler.state.slots  # type: ignore[union-attr]
        run(collect(eng, chat("Hi", max_tokens=3, sampling=GREEDY)))
        keys = {slot.graph_key for slot in slots}
        assert len(keys) == 1 and None not in keys
        chains = [slot.graph_sampler for slot in slots]
        assert len({id(c) for c in chains}) == 3 and all(c and c.attached for c in chains)
        run(collect(eng, chat("A different question entirely", max_tokens=3, sampling=GREEDY)))
        assert [slot.graph_sampler for slot in slots] == chains  # reused, none re-attached
    finally:
        eng.close()
