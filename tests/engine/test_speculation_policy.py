"""Speculation's pure parts: the n-gram index, step prices by size, the draft-length decision,
its evidence (also from drafts not checked), the request options that choose it, and the
planner counting a draft model's memory."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from backend.application.requests import RequestOptions, build_request, speculative_mode
from backend.engine.ngram import KEY, NgramIndex, band
from backend.engine.speculation import (
    MIN_GAIN,
    Acceptance,
    AcceptanceBook,
    RequestSpeculation,
    draft_length,
    expected_tokens,
)
from backend.engine.step_costs import SizeCosts
from backend.engine.types import ChatMessage, SpeculationParams
from backend.errors import InvalidRequest
from backend.settings import Settings

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


# -- what a step costs, by size ----------------------------------------------------------

def cpu_curve(n: int) -> float:
    """Two CPU cores and a 135M model: reading the weights is the step up to ~3 tokens, then
    each token adds a third of a step."""
    return 0.010 + 0.001 * min(n - 1, 2) + 0.0033 * max(n - 3, 0)


def gpu_curve(n: int) -> float:
    """A GPU: a dozen tokens cost about as much as one."""
    return 0.003 + 0.00002 * (n - 1)


def costs_of(curve: Callable[[int], float], sizes: range) -> SizeCosts:
    costs = SizeCosts()
    for n in sizes:
        costs.learn(n, curve(n))
    return costs


def test_step_sizes_are_priced_as_measured_and_between_measured_sizes() -> None:
    costs = SizeCosts()
    assert costs.seconds(4, 0.001) == 0.0  # nothing timed yet
    costs.learn(1, 0.010)
    costs.learn(5, 0.020)
    assert costs.seconds(1, 0.001) == pytest.approx(0.010)
    assert costs.seconds(3, 0.001) == pytest.approx(0.015)  # between 1 and 5
    # Beyond the largest measured size: the steeper of the guess and the measured slope.
    assert costs.seconds(9, 0.001) == pytest.approx(0.020 + 4 * 0.0025)
    assert costs.seconds(9, 0.004) == pytest.approx(0.020 + 4 * 0.004)


def test_a_slow_step_is_capped_by_a_cheaper_larger_one_and_a_spike_moves_it_little() -> None:
    costs = SizeCosts()
    costs.learn(1, 0.010)
    costs.learn(2, 0.050)  # preempted: another process had the core
    costs.learn(4, 0.016)
    assert costs.seconds(2, 0.001) == pytest.approx(0.016)  # a larger step can't cost less
    costs.learn(4, 10.0)  # one step 600x slower moves the estimate by at most WEIGHT * SPIKE
    assert costs.seconds(4, 0.001) <= 0.016 * (1 + SizeCosts.WEIGHT * (SizeCosts.SPIKE - 1))


def test_a_price_not_renewed_for_long_is_forgotten() -> None:
    """A size priced out by a busy moment is priced from its neighbours again later, so the
    draft length it stands for is tried (and timed) again."""
    costs = SizeCosts()
    costs.learn(1, 0.010)
    costs.learn(2, 0.040)  # a busy moment: drafting one token looks like it costs 3 steps
    for _ in range(SizeCosts.STALE_STEPS + 1):
        costs.learn(1, 0.010)
    assert not costs.measured(2)
    assert costs.seconds(2, 0.002) == pytest.approx(0.012)


# -- how far to draft ----------------------------------------------------------------------

def length(alpha: float, limit: int, curve: Callable[[int], float] = cpu_curve,
           **kw: object) -> int:
    return draft_length(alpha, limit, step_s=curve, size=1, **kw)  # type: ignore[arg-type]


def test_expected_tokens_is_the_geometric_sum() -> None:
    assert expected_tokens(0.0, 5) == 1.0
    assert expected_tokens(1.0, 5) == 6.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)


def test_no_draft_when_guesses_are_mostly_wrong() -> None:
    assert length(0.05, 64) == 0
    assert length(0.1, 64) == 0  # on the CPU even one token costs a tenth of a step


def test_the_draft_length_follows_the_cost_curve() -> None:
    """Copies (alpha 0.95): a few tokens on the CPU, where each past the third costs a third of
    a step; many on a GPU, where they cost next to nothing."""
    cpu = length(0.95, 64)
    gpu = length(0.95, 64, gpu_curve)
    assert 2 <= cpu <= 10
    assert gpu >= 16
    assert length(0.95, 3) == 3  # no more than the source has


def test_draft_longer_when_the_acceptance_history_says_so() -> None:
    ks = [length(a, 64) for a in (0.6, 0.8, 0.9, 0.97)]
    assert ks == sorted(ks) and ks[0] < ks[-1]


def test_other_streams_make_drafting_pay_less() -> None:
    """Every stream in the step waits for the drafts: with many, only sure guesses pay."""
    alone = draft_length(0.6, 64, step_s=cpu_curve, size=1)
    crowded = draft_length(0.6, 64, step_s=cpu_curve, size=8, others=7)
    assert alone > 0
    assert crowded < alone


def test_a_slow_draft_model_must_be_right_more_often() -> None:
    assert length(0.7, 16, gpu_curve, draft_step_s=0.0003) > 0
    assert length(0.7, 16, gpu_curve, draft_step_s=0.003) == 0


def test_the_chosen_length_beats_not_drafting_by_the_margin() -> None:
    for curve in (cpu_curve, gpu_curve):
        for alpha in (0.3, 0.6, 0.9):
            k = length(alpha, 64, curve)
            if k:
                assert expected_tokens(alpha, k) / curve(1 + k) > MIN_GAIN / curve(1)


def test_n_min_forbids_shorter_drafts() -> None:
    assert length(0.95, 3, n_min=4) == 0


def test_timed_sizes_price_drafts_once_the_curve_is_learnt() -> None:
    """Learnt from steps of a few sizes, the table gives the same choice as the true curve."""
    learnt = costs_of(cpu_curve, range(1, 12))
    for alpha in (0.5, 0.8, 0.95):
        assert draft_length(alpha, 64, step_s=lambda n: learnt.seconds(n, 0.0033),
                            size=1) == length(alpha, 64)


def test_a_draft_model_never_right_is_probed_rarely() -> None:
    """Zero acceptance on a GPU (a step of the draft model a third of the target's): a probe
    waits until it costs ~PROBE_BUDGET of the decoding done meanwhile, then twice as long."""
    from types import SimpleNamespace

    from backend.engine.speculation import PROBE_BUDGET, Acceptance
    from backend.engine.speculator import Speculator
    from backend.engine.step_costs import StepCosts

    costs = StepCosts()
    costs.decode_step = 0.003
    state = SimpleNamespace(draft=SimpleNamespace(step_s=0.001))
    spec = RequestSpeculation(ngram=False, draft_model=True, n_max=None, n_min=0, p_min=0.0,
                              evidence={"draft": Acceptance(0.0, 50.0)}, prompt=[1])
    probes = [i for i in range(2000) if Speculator()._draft_model_length(
        state, spec, costs, gpu_curve, 1, 16)]  # type: ignore[arg-type]
    # Each probe: ~2 draft-model steps + catching up + a slightly longer check (~1 step).
    spent = len(probes) * (3 * 0.001 + gpu_curve(3) - gpu_curve(1))
    assert spent < 2 * PROBE_BUDGET * 2000 * gpu_curve(1)
    assert probes and probes[0] >= 40
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps == sorted(gaps)


# -- evidence from drafts not checked ------------------------------------------------------

def spec_for(prompt: list[int]) -> RequestSpeculation:
    return RequestSpeculation(ngram=True, draft_model=False, n_max=None, n_min=0, p_min=0.0,
                              evidence=AcceptanceBook().start(), prompt=prompt)


def test_a_draft_passed_up_is_scored_once_the_reply_has_gone_past_it() -> None:
    spec = spec_for([1, 2, 3, 4, 5, 6, 7, 8, 9])
    spec.observe([1, 2, 3])
    found = spec.ngram_index().lookup(8)
    assert found is not None and found.tokens == [4, 5, 6, 7, 8, 9, 1, 2]
    spec.pass_up(found.tokens, "ngram0")
    spec.observe([4, 5])
    spec.ngram_index()
    assert spec.settle_shadow() is None  # right so far: not settled yet
    spec.observe([6, 70])  # the reply parts from the guess at its fourth token
    spec.ngram_index()
    assert spec.settle_shadow() == ("ngram0", 3, True)
    assert spec.shadow is None


def test_a_shadow_draft_all_right_counts_no_rejection() -> None:
    spec = spec_for([1, 2, 3, 4, 5])
    spec.observe([1, 2, 3])
    found = spec.ngram_index().lookup(2)
    assert found is not None
    spec.pass_up(found.tokens, "ngram1")
    spec.observe([4, 5, 6])
    spec.ngram_index()
    assert spec.settle_shadow() == ("ngram1", 2, False)


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
    assert 0.02 < start.alpha() < 0.3


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
