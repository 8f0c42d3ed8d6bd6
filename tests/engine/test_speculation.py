"""Speculative decoding through llama.cpp with real models: drafts are checked by the model in
one batch and only what it agrees with is kept; sampling keeps the model's distribution; it
shares steps with streams that don't speculate, and stays off where it can't work."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import llama_cpp as C
import numpy as np
import pytest

from backend.engine import speculator as speculator_module
from backend.engine.engine import Engine
from backend.engine.grammars import JSON_OBJECT_GRAMMAR
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    SamplingParams,
    SpeculationParams,
    TextDelta,
)
from backend.library.local import LocalModel

GREEDY = SamplingParams(temperature=0.0)
CODE = '''def compute_totals(orders):
    total = 0
    count = 0
    for order in orders:
        if order.cancelled:
            continue
        for line in order.lines:
            total += line.price * line.quantity
            count += line.quantity
    average = total / count if count else 0
    return total, count, average
'''
EDIT = (f"Rename the variable `total` to `grand_total` in this code and return the whole "
        f"code.\n\n```python\n{CODE}```")
RECORD = {"name": "Ada Lovelace", "born": 1815, "field": "mathematics", "city": "London"}
COPY_JSON = f"Return exactly this JSON object, unchanged: {json.dumps(RECORD)}"


def load(path: Path, *, parallel: int = 2, draft: Path | None = None) -> Engine:
    engine = Engine()
    # Without flash attention, as the planner loads SmolLM2 on a CPU.
    asyncio.run(engine.load(LocalModel("smollm2:135m", path, "builtin"), LoadPlan(
        n_ctx=2048, n_parallel=parallel, n_threads=2, flash_attn=False,
        draft_model_path=str(draft) if draft else None)))
    return engine


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    eng = load(smollm2_path)
    yield eng
    eng.close()


def request(prompt: str, mode: str = "auto", *, sampling: SamplingParams = GREEDY,
            max_tokens: int = 160, **kw: object) -> GenerationRequest:
    spec = SpeculationParams(mode=mode, **kw)  # type: ignore[arg-type]
    return GenerationRequest(messages=(ChatMessage("user", prompt),), sampling=sampling,
                             max_tokens=max_tokens, speculation=spec)


async def collect(engine: Engine, req: GenerationRequest) -> tuple[str, Finished]:
    parts, final = [], None
    async for event in engine.generate(req):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Finished):
            final = event
    assert final is not None and final.error is None, final
    return "".join(parts), final


def reply(engine: Engine, req: GenerationRequest) -> tuple[str, Finished]:
    return asyncio.run(collect(engine, req))


def _sampled(engine: Engine, req: GenerationRequest, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[Finished, list[tuple[int, float]]]:
    """The reply's tokens in order, each with its row's gap between the two best logits."""
    from backend.engine.sampler import NativeSampler

    seen: list[tuple[int, float]] = []
    sample = NativeSampler.sample

    def recording(self: NativeSampler, ctx, index: int, **kw):  # type: ignore[no-untyped-def]
        row = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx.ptr, index),
                                    shape=(ctx.model.n_vocab,))
        top2 = np.partition(row, -2)[-2:]
        token = sample(self, ctx, index, **kw)
        seen.append((token, float(top2[1] - top2[0])))
        return token

    with monkeypatch.context() as m:
        m.setattr(NativeSampler, "sample", recording)
        _, final = reply(engine, req)
    return final, seen


def test_copied_code_is_drafted_and_accepted_and_the_reply_unchanged(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same greedy reply with and without drafts, apart from float differences: where
    the two part, the model's two best tokens were within rounding of each other (a batch of
    checked positions rounds differently from one position decoded alone)."""
    plain, off = _sampled(engine, request(EDIT, "off"), monkeypatch)
    # The draft length is pinned: this test is about what checking keeps, not about when the
    # policy (tests/engine/test_speculation_policy.py) finds drafting worth it, which depends
    # on the step times this machine measures (on a quiet 2-core run it drafted once).
    spec, on = _sampled(engine, request(EDIT, "ngram", n_min=4, n_max=4), monkeypatch)
    assert plain.usage.draft_tokens == 0
    assert spec.usage.draft_accepted >= 20, spec.usage
    assert spec.usage.draft_accepted <= spec.usage.draft_tokens
    parted = next((i for i, (a, b) in enumerate(zip(off, on, strict=False)) if a[0] != b[0]),
                  None)
    if parted is None:
        assert [t for t, _ in on] == [t for t, _ in off]
    else:
        assert min(off[parted][1], on[parted][1]) < 0.25, (parted, off[parted], on[parted])


def test_every_kept_token_is_the_models_argmax_in_the_checking_batch(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy: at each checked position the token kept is the argmax of the logits computed
    in the batch that checked the draft, and a guess is kept only where it is that argmax."""
    seen: list[tuple[list[int], list[int], list[int]]] = []
    check = speculator_module.Speculator.check

    def recording_check(self: speculator_module.Speculator, state, slot):  # type: ignore[no-untyped-def]
        rows = [slot.logits_index, *slot.draft_rows]
        argmax = [int(np.ctypeslib.as_array(C.llama_get_logits_ith(state.ctx.ptr, r),
                                            shape=(state.model.n_vocab,)).argmax())
                  for r in rows]
        draft = list(slot.draft)
        tokens = check(self, state, slot)
        seen.append((draft, argmax, tokens))
        return tokens

    monkeypatch.setattr(speculator_module.Speculator, "check", recording_check)
    reply(engine, request(EDIT, "ngram"))
    assert seen
    for draft, argmax, tokens in seen:
        accepted = len(tokens) - 1
        assert tokens == argmax[:len(tokens)]
        assert draft[:accepted] == tokens[:accepted]
        if accepted < len(draft):
            assert tokens[-1] != draft[accepted]


def test_a_prompt_price_learnt_on_a_busy_machine_does_not_switch_drafting_off(
        engine: Engine) -> None:
    """The first prompt step after a load, on a machine busy with other work, can price a
    prompt token above a whole decode step. Drafts are then still tried (at a capped price),
    and the checking steps they bring teach their real cost."""
    reply(engine, request(EDIT, "off", max_tokens=8))  # the prompt is cached from here on

    def overprice() -> None:
        engine._scheduler._costs.per_prompt_token = 1.0  # a second a token: absurd
        engine._scheduler._speculator.reset()  # and nothing timed about checking yet

    engine._scheduler.call(overprice).result(timeout=10)
    _, final = reply(engine, request(EDIT, "ngram"))
    # Drafts are tried and kept; how many more follow is the timed policy's call (on a quiet
    # 2-core machine it drafted 10 and kept 8 of this reply's 85 tokens).
    assert final.usage.draft_accepted > 0, final.usage


def test_a_grammar_request_uses_drafts_the_grammar_allows(engine: Engine) -> None:
    base = GenerationRequest(messages=(ChatMessage("user", COPY_JSON),), sampling=GREEDY,
                             max_tokens=80, grammar=JSON_OBJECT_GRAMMAR)
    off, _ = reply(engine, dataclasses.replace(base, speculation=SpeculationParams("off")))
    # Two guesses at every step where the reply's latest tokens appeared before.
    on, final = reply(engine, dataclasses.replace(
        base, speculation=SpeculationParams("ngram", n_max=2, n_min=2)))
    assert on == off
    json.loads(on)  # still the grammar's language
    assert final.usage.draft_accepted > 0


def test_a_speculating_stream_shares_steps_with_one_that_does_not(engine: Engine) -> None:
    story = request("Write a short story about a cat.", "off", max_tokens=60)
    alone, _ = reply(engine, story)

    # The draft length is pinned: this test is about steps shared by a stream that drafts and
    # one that doesn't, not about whether the timed policy finds drafting worth it (two
    # threads on a machine busy with other work can make a checking step cost several).
    async def both() -> list[tuple[str, Finished]]:
        return await asyncio.gather(collect(engine, request(EDIT, "ngram", n_min=2, n_max=2)),
                                    collect(engine, request("Write a short story about a "
                                                            "cat.", "off", max_tokens=60)))

    (_, spec), (text, plain) = asyncio.run(both())
    assert spec.usage.draft_accepted > 0  # it speculated while the other stream ran
    assert plain.usage.draft_tokens == 0
    assert text == alone


def test_no_drafts_while_every_slot_is_streaming(engine: Engine) -> None:
    async def both() -> list[tuple[str, Finished]]:
        return await asyncio.gather(*(collect(engine, request(EDIT, "ngram", max_tokens=60))
                                      for _ in range(2)))

    results = asyncio.run(both())
    assert [f.usage.draft_tokens for _, f in results] == [0, 0]


def test_free_writing_wastes_few_checked_tokens(engine: Engine) -> None:
    """Evidence: guesses from a story's own text are mostly wrong until it repeats itself,
    so few wrong guesses are checked (a small model that loops is drafted for, rightly)."""
    _, final = reply(engine, request("Write a long story about a storm at sea.", "auto",
                                     max_tokens=200))
    usage = final.usage
    assert usage.draft_tokens - usage.draft_accepted <= usage.completion_tokens // 4, usage


def test_a_pinned_length_drafts_whatever_the_evidence(engine: Engine) -> None:
    _, final = reply(engine, request(EDIT, "ngram", n_max=4, n_min=4))
    assert final.usage.draft_tokens > 0
    assert final.usage.draft_tokens % 4 == 0


def test_cancel_while_speculating_ends_that_request_alone(engine: Engine) -> None:
    before, _ = reply(engine, request(EDIT, "off"))

    async def go() -> tuple[Finished, str]:
        req = request(EDIT, "ngram", max_tokens=200)
        final = None
        n = 0
        other = asyncio.ensure_future(collect(engine, request("Say hello.", "off",
                                                              max_tokens=20)))
        async for event in engine.generate(req):
            if isinstance(event, TextDelta):
                n += 1
                if n == 10:
                    engine.cancel(req.request_id)
            elif isinstance(event, Finished):
                final = event
        text, _ = await other
        assert final is not None
        return final, text

    final, text = asyncio.run(go())
    assert final.finish_reason == "cancelled"
    assert text
    # The slot's cache is still sound: the same request again is the same reply.
    assert reply(engine, request(EDIT, "off"))[0] == before


def test_recurrent_models_do_not_speculate(smollm2_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.engine import native

    monkeypatch.setattr(native.C, "llama_model_is_recurrent", lambda ptr: True)
    eng = load(smollm2_path, parallel=1)
    try:
        assert "rolled back" in (eng.loaded.speculation_note if eng.loaded else "")
        _, final = reply(eng, request(EDIT, "ngram", n_max=4, n_min=4, max_tokens=60))
        assert final.usage.draft_tokens == 0
    finally:
        eng.close()


def test_a_draft_model_of_another_family_is_refused_with_the_reason(
        smollm2_path: Path, gemma_path: Path) -> None:
    eng = load(smollm2_path, parallel=1, draft=gemma_path)
    try:
        info = eng.loaded
        assert info is not None and info.draft_model is None
        assert "can't draft for this model" in info.speculation_note
        # SmolLM2's tokenizer is BPE, Gemma's SentencePiece: the first check that differs.
        assert "tokenizer is of another kind" in info.speculation_note
        assert reply(eng, request("Say hi.", "auto", max_tokens=8))[0]  # still works
    finally:
        eng.close()


@pytest.fixture(scope="module")
def self_drafting(smollm2_path: Path) -> Iterator[Engine]:
    """SmolLM2 drafting for itself: identical weights, so the draft is the model's argmax."""
    eng = load(smollm2_path, parallel=4, draft=smollm2_path)
    yield eng
    eng.close()


def test_a_draft_model_of_the_same_weights_is_accepted(self_drafting: Engine) -> None:
    assert self_drafting.loaded is not None
    assert self_drafting.loaded.draft_model == self_drafting.loaded.path.split("/")[-1]
    off, _ = reply(self_drafting, request(EDIT, "off", max_tokens=60))
    on, final = reply(self_drafting, request(EDIT, "draft", n_max=4, n_min=4, max_tokens=60))
    usage = final.usage
    assert usage.draft_tokens >= 40
    assert usage.draft_accepted >= 0.8 * usage.draft_tokens, usage
    assert on == off


PROMPT = "The three best things about a rainy day are"
SAMPLES = 160


def _openings(engine: Engine, mode: str, seeds: range) -> list[tuple[str, ...]]:
    """The first two pieces of text of each seed's reply, 4 requests at a time. With
    ``draft`` the draft model guesses two tokens at every step, so the second piece comes
    from a checked position."""
    async def one(seed: int) -> tuple[str, ...]:
        req = GenerationRequest(
            prompt=PROMPT, max_tokens=4,
            sampling=SamplingParams(temperature=1.0, top_k=6, top_p=1.0, min_p=0.0,
                                    seed=seed),
            speculation=SpeculationParams(mode, n_max=2, n_min=2))  # type: ignore[arg-type]
        pieces = []
        async for event in engine.generate(req):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
        return tuple(pieces[:2])

    async def run() -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        batch = list(seeds)
        for i in range(0, len(batch), 4):
            out += await asyncio.gather(*(one(s) for s in batch[i:i + 4]))
        return out

    return asyncio.run(run())


def chi_square_p(table: list[list[int]]) -> float:
    """Pearson's chi-square test of a contingency table: the p-value."""
    rows, cols = [sum(r) for r in table], [sum(c) for c in zip(*table, strict=True)]
    total = sum(rows)
    stat = sum((table[i][j] - rows[i] * cols[j] / total) ** 2 / (rows[i] * cols[j] / total)
               for i in range(len(rows)) for j in range(len(cols)))
    dof = (len(rows) - 1) * (len(cols) - 1)
    return _upper_gamma(dof / 2, stat / 2)


def _upper_gamma(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) (Numerical Recipes)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-12:
            n += 1
            term *= x / n
            total += term
        return 1.0 - total * math.exp(log_front)
    b, c, d = x + 1 - a, 1e300, 1 / (x + 1 - a)  # continued fraction for Q
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = 1 / (an * d + b)
        c = b + an / c
        h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return math.exp(log_front) * h


def test_chi_square_helper_matches_known_values() -> None:
    assert _upper_gamma(1.0, 1.0) == pytest.approx(math.exp(-1))
    assert chi_square_p([[10, 20], [20, 10]]) == pytest.approx(0.0098, abs=2e-4)
    assert chi_square_p([[30, 30], [30, 30]]) == pytest.approx(1.0)


def test_sampling_with_drafts_keeps_the_models_distribution(self_drafting: Engine) -> None:
    """Chi-square, two samples (fixed, disjoint seeds): the reply's opening two pieces with
    the draft model guessing two tokens a step against the model alone. Categories: the
    openings seen at least 5 times, the rest pooled."""
    spec = _openings(self_drafting, "draft", range(SAMPLES))
    plain = _openings(self_drafting, "off", range(10_000, 10_000 + SAMPLES))
    counts = collections.Counter(spec) + collections.Counter(plain)
    common = [k for k, n in counts.items() if n >= 5]
    table = [[sum(1 for s in side if s == k) for k in common]
             + [sum(1 for s in side if s not in common)] for side in (spec, plain)]
    table = [list(r) for r in zip(*[c for c in zip(*table, strict=True) if sum(c)],
                                  strict=True)]
    assert len(table[0]) >= 3, table  # enough categories to say something
    p = chi_square_p(table)
    assert p > 0.01, (p, table)
    # The same seed gives the same reply with and without drafts: every token is drawn from
    # the model's chain, with the same random numbers in the same order.
    again = _openings(self_drafting, "off", range(SAMPLES // 4))
    same = sum(a == b for a, b in zip(again, spec[:SAMPLES // 4], strict=True))
    assert same >= 0.9 * (SAMPLES // 4), same
