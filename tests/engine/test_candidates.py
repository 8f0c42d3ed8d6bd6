"""The narrowed vocabulary gives exactly the tokens llama.cpp's chain gives over all of it.

Real models, real logits: two chains with the same settings and seed, one handed the whole
vocabulary (``llama_sampler_sample``), one the candidates (``candidates.py``), must pick the
same token at every step of a generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backend.engine.candidates import Candidates
from backend.engine.native import ContextConfig, NativeContext, NativeModel
from backend.engine.sampler import NativeSampler

SETTINGS = {
    "defaults": dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05),
    "hot, wide top-k": dict(temperature=1.5, top_k=200, top_p=1.0, min_p=0.0),
    "penalties": dict(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.3,
                      repeat_last_n=16, presence_penalty=0.4, frequency_penalty=0.3),
    "negative penalties": dict(temperature=0.7, top_k=5, top_p=1.0, min_p=0.0,
                               repeat_penalty=0.7, repeat_last_n=32, frequency_penalty=-1.5),
    "greedy": dict(temperature=0.0, top_k=40, top_p=1.0, min_p=0.0),
    "greedy, penalties": dict(temperature=0.0, top_k=40, top_p=1.0, min_p=0.0,
                              repeat_penalty=1.5, repeat_last_n=64),
}


def make_sampler(model: NativeModel, **overrides: float) -> NativeSampler:
    params: dict = dict(repeat_penalty=1.0, repeat_last_n=64, presence_penalty=0.0,
                        frequency_penalty=0.0, seed=77, grammar=None)
    params.update(overrides)
    return NativeSampler(model, **params)


@pytest.fixture(scope="module", params=["smollm2", "gemma"])
def native(request: pytest.FixtureRequest) -> Iterator[tuple[NativeModel, NativeContext]]:
    path: Path = request.getfixturevalue(f"{request.param}_path")
    model = NativeModel(path)
    ctx = NativeContext(model, ContextConfig(n_ctx=512, n_batch=512, n_ubatch=512,
                                             n_seq_max=1, n_threads=2, n_threads_batch=2))
    yield model, ctx
    ctx.close()
    model.close()


@pytest.mark.parametrize("name", list(SETTINGS))
def test_narrowed_chain_picks_the_same_tokens(native: tuple[NativeModel, NativeContext],
                                              name: str) -> None:
    model, ctx = native
    narrowed = make_sampler(model, **SETTINGS[name])
    whole = make_sampler(model, **SETTINGS[name])
    try:
        ctx.seq_remove(0, 0)
        prompt = model.tokenize("Once upon a time, in a small village by the sea,",
                                add_bos=model.add_bos)
        ctx.batch_clear()
        for pos, token in enumerate(prompt):
            index = ctx.batch_add(token, pos, 0, pos == len(prompt) - 1)
        ctx.decode()
        picked = []
        for pos in range(len(prompt), len(prompt) + 48):
            token = narrowed.sample(ctx, index, narrow=True)
            assert token == whole.sample(ctx, index, narrow=False), (name, picked)
            picked.append(token)
            ctx.batch_clear()
            index = ctx.batch_add(token, pos, 0, True)
            ctx.decode()
        if SETTINGS[name].get("repeat_last_n"):
            assert narrowed._recent is not None and list(narrowed._recent) == picked[
                -int(SETTINGS[name]["repeat_last_n"]):]
    finally:
        narrowed.close()
        whole.close()


def _narrow(logits: np.ndarray, keep: int, protected: set[int]) -> set[int]:
    candidates = Candidates(logits.size, keep)
    array = candidates.narrow(logits.ctypes.data, protected)
    return {array.data[i].id for i in range(array.size)}


@pytest.mark.parametrize("shape", ["random", "ascending", "descending", "ties", "spikes"])
def test_candidates_hold_the_top_tokens_and_the_penalised_ones(shape: str) -> None:
    n, keep = 262_144, 40
    rng = np.random.default_rng(3)
    logits = {
        "random": rng.standard_normal(n),
        "ascending": np.arange(n),  # a strided sample sees a skewed picture
        "descending": -np.arange(n),
        "ties": np.zeros(n),
        "spikes": np.where(rng.random(n) < 1e-4, 20.0, -20.0),
    }[shape].astype(np.float32)
    protected = {int(i) for i in rng.integers(0, n, 30)}
    got = _narrow(logits, keep, protected)
    need = keep + len(protected)
    top = np.argsort(-logits, kind="stable")[:need]
    kth = logits[top[-1]]
    assert protected <= got
    assert {int(i) for i in np.flatnonzero(logits > kth)} <= got
    assert len(got) >= need


def test_narrowing_is_skipped_when_the_chain_keeps_most_of_the_vocabulary() -> None:
    assert Candidates(49_152, 40).worthwhile(64)
    assert not Candidates(49_152, 10_000).worthwhile(0)
