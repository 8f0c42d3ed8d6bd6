"""Speculation's pure parts: the n-gram index, the draft-length decision, its evidence, the
request options that choose it, and the planner counting a draft model's memory."""

from __future__ import annotations

import dataclasses

import pytest

from backend.application.requests import RequestOptions, build_request, speculative_mode
from backend.engine.ngram import KEY, NgramIndex, band
from backend.engine.speculation import (
    MIN_GAIN,
    Acceptance,
    AcceptanceBook,
    VerifyCost,
    draft_length,
    expected_tokens,
)
from backend.engine.types import ChatMessage, SpeculationParams
from backend.errors import InvalidRequest
from backend.settings import Settings

CHEAP = VerifyCost(fixed=0.0, per_token=0.001)  # a drafted token adds a tenth of a step


# -- the n-gram index ----------------------------------------------------------------------

def test_lookup_continues_the_earlier_copy_of_the_latest_tokens() -> None:
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    index = NgramIndex([*prompt, 50, 2, 3, 4])  # the reply starts copying at 2 3 4
    found = index.lookup(4)
    assert found is not None
    assert found.tokens == [5, 6, 7, 8]
    assert found.match == KEY  # 1 != 50 before the match


def test_the_place_whose_past_agrees_longest_wins() -> None:
    tokens = [9, 8, 1, 2, 3, 70, 5, 1, 2, 3, 71, 6, 5, 1, 2, 3]
    found = NgramIndex(tokens).lookup(1)
    assert found is not None
    assert found.tokens == [71]  # "5 1 2 3" matched 4 tokens there, "8 1 2 3" only 3
    assert found.match == 4


def test_no_draft_without_an_earlier_place_and_tokens_added_one_by_one() -> None:
    index = NgramIndex([1, 2, 3])
    assert index.lookup(8) is None
    for token in (4, 1, 2, 3):
        index.append(token)
    found = index.lookup(8)
    assert found is not None and found.tokens == [4, 1, 2, 3]  # up to the present


def test_bands_grow_with_the_match() -> None:
    assert [band(m) for m in (3, 6, 12, 24, 64)] == [0, 1, 2, 3, 3]


# -- how far to draft ----------------------------------------------------------------------

def test_expected_tokens_is_the_geometric_sum() -> None:
    assert expected_tokens(0.0, 5) == 1.0
    assert expected_tokens(1.0, 5) == 6.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)


def test_no_draft_when_guesses_are_mostly_wrong() -> None:
    assert draft_length(0.05, 64, step_s=0.010, verify_s=CHEAP,
                        fallback_per_token_s=0.001) == 0


def test_long_drafts_when_guesses_are_right_and_checking_is_cheap() -> None:
    k = draft_length(0.95, 64, step_s=0.010, verify_s=CHEAP, fallback_per_token_s=0.001)
    assert k >= 8
    assert draft_length(0.95, 3, step_s=0.010, verify_s=CHEAP,
                        fallback_per_token_s=0.001) == 3  # no more than the source has


def test_other_streams_make_drafting_pay_less() -> None:
    """Every stream in the step waits for the drafts: with many, only sure guesses pay."""
    alone = draft_length(0.5, 64, step_s=0.010, verify_s=CHEAP, fallback_per_token_s=0.001)
    crowded = draft_length(0.5, 64, step_s=0.010, verify_s=CHEAP, fallback_per_token_s=0.001,
                           others=7)
    assert alone > 0
    assert crowded < alone


def test_a_slow_draft_model_must_be_right_more_often() -> None:
    kw = {"step_s": 0.010, "verify_s": CHEAP, "fallback_per_token_s": 0.001}
    assert draft_length(0.6, 16, **kw, draft_step_s=0.0005) > 0
    assert draft_length(0.6, 16, **kw, draft_step_s=0.008) == 0


def test_the_chosen_length_beats_not_drafting_by_the_margin() -> None:
    for alpha in (0.3, 0.6, 0.9):
        k = draft_length(alpha, 64, step_s=0.010, verify_s=CHEAP, fallback_per_token_s=0.001)
        if k:
            rate = expected_tokens(alpha, k) / (0.010 + CHEAP.seconds(k, 0.0))
            assert rate > MIN_GAIN / 0.010


def test_n_min_forbids_shorter_drafts() -> None:
    assert draft_length(0.95, 3, step_s=0.010, verify_s=CHEAP, fallback_per_token_s=0.001,
                        n_min=4) == 0


def test_verify_cost_fits_fixed_and_per_token_parts() -> None:
    cost = VerifyCost()
    assert cost.seconds(4, 0.002) == pytest.approx(0.008)  # nothing learnt: the fallback
    for k in (1, 4, 8, 16, 2, 12):
        cost.learn(k, 0.003 + 0.0005 * k)
    assert cost.fixed == pytest.approx(0.003, rel=0.05)
    assert cost.per_token == pytest.approx(0.0005, rel=0.05)


def test_acceptance_evidence_and_the_engine_memory() -> None:
    seen = Acceptance()
    seen.add(3, rejected=True)
    seen.add(4, rejected=False)
    assert seen.alpha() == pytest.approx(7 / 8)
    book = AcceptanceBook()
    for _ in range(200):  # this draft model is never right
        book.learn("draft", 0, rejected=True)
    start = book.start()["draft"]
    # A new request starts low but not at zero: the prior keeps a way back.
    assert 0.05 < start.alpha() < 0.3


# -- request options -----------------------------------------------------------------------

def test_speculative_names_hearths_and_llama_servers() -> None:
    assert speculative_mode("ngram-mod") == "ngram"
    assert speculative_mode("draft-simple") == "draft"
    assert speculative_mode("none") == "off"
    assert speculative_mode("Auto") == "auto"
    assert speculative_mode(None) is None
    with pytest.raises(InvalidRequest):
        speculative_mode("eagle")


def test_build_request_takes_the_saved_mode_unless_the_request_says() -> None:
    saved = Settings().model_copy(update={"engine": Settings().engine.model_copy(
        update={"speculative": "ngram"})})
    messages = (ChatMessage("user", "hi"),)
    assert build_request(messages=messages, settings=saved).speculation == \
        SpeculationParams(mode="ngram")
    asked = build_request(messages=messages, settings=saved, options=RequestOptions(
        speculative="off", speculative_n_max=8, speculative_n_min=2, speculative_p_min=0.5))
    assert asked.speculation == SpeculationParams("off", 8, 2, 0.5)
    with pytest.raises(InvalidRequest):
        build_request(messages=messages, settings=saved,
                      options=RequestOptions(speculative_p_min=1.5))


def test_planner_counts_the_draft_models_memory(smollm2_path: object) -> None:
    from backend.hardware.memory_model import PlanRequest
    from backend.hardware.planner import plan_offload
    from backend.hardware.probe import Hardware
    from backend.library.gguf_meta import read_gguf_metadata

    meta = read_gguf_metadata(smollm2_path)  # type: ignore[arg-type]
    hardware = Hardware(cpu_name="test", physical_cores=2, ram_total_bytes=16 << 30,
                        ram_available_bytes=8 << 30, gpus=(), gpu_offload_supported=False)
    alone = plan_offload(meta, hardware, PlanRequest(n_ctx=4096))
    with_draft = plan_offload(meta, hardware, PlanRequest(n_ctx=4096, draft=meta))
    extra = with_draft.cpu.total - alone.cpu.total
    # The draft's weights, its own KV cache and compute buffer.
    assert extra > sum(meta.layer_bytes) + meta.token_embd_bytes
    assert dataclasses.replace(with_draft.inputs.request, draft=None) == alone.inputs.request
