"""Embeddings in the engine with real models (SmolLM2, a decoder mean-pooled; a BERT-shaped
model with random weights, non-causal): vectors that don't depend on their batch neighbours,
one embedding decode per scheduler iteration, short decodes while chats stream, requests that
share decodes, and a cancelled request that stops costing decodes."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.engine.embedder import EmbeddingModel
from backend.engine.embeddings import Embeddings
from tests.fixtures.synth_bert import make_bert

_WORD_TEXT = "the quick brown fox jumps over the lazy dog and a model file token text"
WORDS = _WORD_TEXT.split()


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)  # lengths differ: neighbours of unequal length
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 40)))) for _ in range(count)]


class IterationLoop:
    """Runs calls on one thread in iterations, as ``Scheduler._run`` does: the calls queued
    when an iteration begins, then (here) nothing; records decodes per iteration."""

    def __init__(self) -> None:
        self._calls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = collections.deque()
        self._wake = threading.Condition()
        self.decodes_per_iteration: list[int] = []
        self.decoded: list[int] = []  # tokens of each decode
        self._decodes = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._wake:
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def count(self, model: EmbeddingModel) -> None:
        decode = model.decode

        def counted(sequences: list[list[int]]) -> list[list[float]]:
            self._decodes += 1
            self.decoded.append(sum(map(len, sequences)))
            return decode(sequences)
        model.decode = counted  # type: ignore[method-assign]

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._calls or self._closing):
                    self._wake.wait()
                if self._closing:
                    return
                calls = list(self._calls)
                self._calls.clear()
            self._decodes = 0
            for fn, future in calls:
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled by its caller before its turn, as the engine does
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            self.decodes_per_iteration.append(self._decodes)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(10)


@pytest.fixture()
def loop() -> Iterator[IterationLoop]:
    it = IterationLoop()
    yield it
    it.close()


def _embeddings(loop: IterationLoop, streaming: bool = False) -> Embeddings:
    pool = concurrent.futures.ThreadPoolExecutor(2)
    return Embeddings(loop.call, pool, streaming=lambda: streaming)


async def _embed(emb: Embeddings, path: Path, inputs: list[str]) -> list[list[float]]:
    result = await emb.embed("m", path, inputs, n_threads=2)
    return result.vectors


def _opened(loop: IterationLoop, emb: Embeddings, path: Path) -> EmbeddingModel:
    model = loop.call(lambda: emb._opened("m", path, 2, 0)).result(120)
    loop.count(model)
    return model


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert(tmp_path_factory.mktemp("bert") / "bert.gguf", layers=2, embd=128,
                     heads=4, ff=256)


@pytest.mark.parametrize("which", ["smollm2", "bert"])
def test_a_vector_does_not_depend_on_its_batch_neighbours(
        which: str, smollm2_path: Path, bert_path: Path, loop: IterationLoop) -> None:
    path = smollm2_path if which == "smollm2" else bert_path
    emb = _embeddings(loop)
    texts = _texts(12)
    together = np.array(asyncio.run(_embed(emb, path, texts)))
    alone = np.array([asyncio.run(_embed(emb, path, [t]))[0] for t in texts[:4]])
    assert np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert np.min(np.sum(together[:4] * alone, axis=1)) > 0.9999
    loop.call(emb.close_all).result(30)


def test_one_decode_per_iteration_and_requests_share_decodes(
        smollm2_path: Path, loop: IterationLoop) -> None:
    emb = _embeddings(loop)
    _opened(loop, emb, smollm2_path)

    async def many() -> list[list[list[float]]]:
        return await asyncio.gather(*[_embed(emb, smollm2_path, [t]) for t in _texts(20)])

    results = asyncio.run(many())
    assert all(len(r) == 1 and len(r[0]) == 576 for r in results)
    assert max(loop.decodes_per_iteration) == 1
    assert sum(loop.decodes_per_iteration) < 20  # one-input requests were batched together
    loop.call(emb.close_all).result(30)


@pytest.mark.parametrize("which", ["smollm2", "bert"])
def test_decodes_stay_short_while_chats_stream(which: str, smollm2_path: Path, bert_path: Path,
                                               loop: IterationLoop) -> None:
    """A causal model's long input is decoded in parts (same vector as whole); a non-causal
    model's input is never split, so one input is its floor."""
    path = smollm2_path if which == "smollm2" else bert_path
    streaming = [False]
    emb = Embeddings(loop.call, concurrent.futures.ThreadPoolExecutor(2),
                     streaming=lambda: streaming[0])
    model = _opened(loop, emb, path)
    texts = [*_texts(30), " ".join(_texts(12, seed=1))]  # the last one is ~250 tokens
    whole = np.array(asyncio.run(_embed(emb, path, texts)))
    streaming[0] = True
    model.budget_for = lambda seconds: 40  # type: ignore[method-assign]
    loop.decoded.clear()
    parted = np.array(asyncio.run(_embed(emb, path, texts)))
    assert np.min(np.sum(whole * parted, axis=1)) > 0.9999
    longest = max(len(t) for t in model.tokenize(texts, True))
    assert longest > 200 and len(loop.decoded) > 8
    assert max(loop.decoded) <= (40 if which == "smollm2" else longest)
    loop.call(emb.close_all).result(30)


def test_a_cancelled_request_stops_costing_decodes(smollm2_path: Path,
                                                   loop: IterationLoop) -> None:
    emb = _embeddings(loop, streaming=True)  # short decodes: many of them for 200 inputs
    _opened(loop, emb, smollm2_path)

    async def cancel_early() -> None:
        task = asyncio.create_task(_embed(emb, smollm2_path, _texts(200)))
        while not loop.decoded:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_early())
    decodes = len(loop.decoded)
    asyncio.run(_embed(emb, smollm2_path, ["still working"]))
    assert len(loop.decoded) <= decodes + 2  # the next request ran; the cancelled one didn't
    loop.call(emb.close_all).result(30)


def test_a_stream_waits_only_short_embedding_decodes(smollm2_path: Path) -> None:
    """The real engine: while a chat streams, every embedding decode beside it is short (long
    inputs of a causal model go in parts); the chat gets all its tokens."""
    from backend.engine.engine import Engine
    from backend.engine.types import ChatMessage, GenerationRequest, LoadPlan, TextDelta
    from backend.library.local import LocalModel

    engine = Engine()
    try:
        asyncio.run(engine.load(LocalModel("smollm2:135m", smollm2_path, "builtin"),
                                LoadPlan(n_ctx=1024, n_parallel=1, n_threads=2)))
        emb = engine.embeddings
        model = engine._scheduler.call(lambda: emb._opened("e", smollm2_path, 2, 0)).result(120)
        seen: list[tuple[int, bool, int]] = []  # (tokens, chats streaming, budget then)
        whole, part = model.decode, model.decode_part

        def note(tokens: int) -> None:
            seen.append((tokens, emb._streaming(), model.budget_for(0.05)))

        def decode(sequences: list[list[int]]) -> list[list[float]]:
            note(sum(map(len, sequences)))
            return whole(sequences)

        def decode_part(tokens: list[int], start: int, end: int) -> Any:
            note(end - start)
            return part(tokens, start, end)

        model.decode = decode  # type: ignore[method-assign]
        model.decode_part = decode_part  # type: ignore[method-assign]
        long_texts = [" ".join(_texts(10, seed=s)) for s in range(3)]  # ~200 tokens each

        async def both() -> int:
            deltas = 0
            request = GenerationRequest(messages=(ChatMessage("user", "Count to 50."),),
                                        max_tokens=24)
            async for event in engine.generate(request):
                if isinstance(event, TextDelta):
                    deltas += 1
                    if deltas == 2:  # streaming now: embeddings arrive beside it
                        embedding = asyncio.create_task(
                            emb.embed("e", smollm2_path, long_texts, n_threads=2))
            assert len((await embedding).vectors) == 3
            return deltas

        assert asyncio.run(both()) > 2
        beside = [(n, budget) for n, streaming, budget in seen if streaming]
        assert beside, "no embedding decode ran beside the stream"
        assert all(n <= budget for n, budget in beside), seen
    finally:
        engine.close()


def test_a_model_with_requests_in_flight_is_not_closed_for_another(
        smollm2_path: Path, bert_path: Path, tmp_path: Path, loop: IterationLoop) -> None:
    """Two models open (the most kept) and a request on the first still decoding: asking a
    third model for vectors must not close the first under it (it used to, and the first's
    request failed "unloaded"). The extra model is closed once the first is free."""
    from backend.engine import embeddings as module

    other_bert = make_bert(tmp_path / "bert2.gguf", layers=2, embd=64, heads=4, ff=128)
    emb = _embeddings(loop, streaming=True)  # short decodes: the long request takes many
    first = _opened(loop, emb, smollm2_path)
    first.budget_for = lambda seconds: 16  # type: ignore[method-assign]

    async def overlap() -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
        long = asyncio.create_task(_embed(emb, smollm2_path, _texts(200)))
        while len(loop.decoded) < 2:
            await asyncio.sleep(0.005)
        # Queued behind the long request (first in, first out), so opened while it runs.
        second = asyncio.create_task(_embed(emb, bert_path, ["a second model"]))
        third = asyncio.create_task(_embed(emb, other_bert, ["and a third"]))
        for _ in range(6000):  # until the third is open, or the first request ended
            if len(emb._open) == 3 or long.done():
                break
            await asyncio.sleep(0.01)
        assert not long.done() and not first.closed  # three open while the first is busy
        return await long, await second, await third

    long, second, third = asyncio.run(overlap())
    assert len(long) == 200 and len(second[0]) == 128 and len(third[0]) == 64
    # Every request is done: the models beyond the most kept are closed (idle ones first).
    loop.call(lambda: None).result(30)
    assert len(emb._open) == module.MAX_OPEN
    loop.call(emb.close_all).result(30)


def test_a_request_cancelled_while_its_model_opens_does_not_pin_it(
        smollm2_path: Path, bert_path: Path, tmp_path: Path, loop: IterationLoop) -> None:
    emb = _embeddings(loop)

    async def cancel_while_opening() -> None:
        task = asyncio.create_task(_embed(emb, smollm2_path, ["x"]))
        await asyncio.sleep(0)  # the open is queued on the engine thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_while_opening())
    loop.call(lambda: None).result(120)  # the open ran (or was dropped)
    loop.call(lambda: None).result(30)
    assert not emb._users  # nothing counted in use
    loop.call(emb.close_all).result(30)
