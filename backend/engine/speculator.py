"""Speculative decoding in the scheduler's step: draft, check in one batch, keep what agrees.

Each step, a generating slot may add drafted tokens after its next token (``propose``): from
its own prompt and reply (``ngram.py``) or from the draft model (``draft_model.py``), as far as
``speculation.py``'s evidence says it pays at the step prices measured by batch size
(``step_costs.SizeCosts``, taught by ``learn_step``). An n-gram draft passed up is scored
against the reply later (``speculation.Shadow``), so its source's acceptance stays current.
The step's one ``llama_decode`` computes logits for every drafted position alongside the
other slots' tokens and prompt chunks, so a slot that speculates shares the step with slots
that don't. ``check`` then runs the request's own
sampler chain at each position in turn, as if the drafted tokens had been decoded one by one:
a drafted token is kept while the chain picks exactly it, and the first token the chain picks
differently (or the one after the last drafted token) is the step's last. The cache positions
of the guesses after that are removed (``llama_memory_seq_rm``).

Why this is the standard speculative-sampling rule: drafts here are deterministic (the n-gram
continuation, or the draft model's most likely token), so the draft distribution q is a point
mass on the guess x. The rule accepts x with probability min(1, p(x)/q(x)) = p(x) and otherwise
samples from the residual max(0, p - q), normalised, which is p without x; sampling the
target's chain and comparing accepts x with probability p(x) and, when it picks another
token, that token is distributed as p without x. So every token comes from the target's own
distribution (penalties, grammar, top-k/p, min-p, temperature, seed included), and greedy
replies are the model's argmax at each position, computed in the checking batch.

Engine thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.engine.draft_model import DraftRequest
from backend.engine.slot import Slot
from backend.engine.speculation import (
    DRAFT_SOURCE,
    PROBE_AFTER,
    PROBE_BUDGET,
    AcceptanceBook,
    RequestSpeculation,
    draft_length,
)
from backend.engine.state import LoadedState
from backend.engine.step_costs import StepCosts
from backend.engine.types import GenerationRequest
from backend.errors import GenerationFailed

NGRAM_MAX_DRAFT = 64  # llama-server's ngram-mod drafts up to 64 too
DRAFT_MODEL_MAX_DRAFT = 16
PROBE_TOKENS = 2
# A step size not timed yet is priced from the nearest timed sizes, each token beyond them at
# a prompt token's price, but at no more than this share of a step. The prompt price is learnt
# from prompt steps, and one taken on a busy machine or just after a load (weights paging in)
# can put it above a whole step: drafting would then never pay, and so the checking steps
# that would correct the price would never run.
UNTIMED_DRAFT_SHARE = 0.25


def why_not(state: LoadedState, request: GenerationRequest, attached: bool) -> str:
    """Why this request can't speculate on this model, or ''."""
    if not state.speculation_ok:
        return state.info.speculation_note
    if attached:
        # llama.cpp samples one position per sequence inside the graph (and a batch with
        # more fails whole, every request in it): drafts need the chain on the CPU, which
        # ``chains.sampler_for`` gives requests that ask for speculation.
        return "sampling runs inside llama.cpp's graph for this request"
    return ""


class Speculator:
    def __init__(self) -> None:
        self.book = AcceptanceBook()  # what this model's drafts did on earlier requests

    def reset(self) -> None:
        """A model was loaded: what was learnt was about another one."""
        self.book = AcceptanceBook()

    # -- admission -------------------------------------------------------------------------
    def begin(self, state: LoadedState, slot: Slot, request: GenerationRequest) -> None:
        """Give the slot's new request its speculation (or none)."""
        params = request.speculation
        slot.spec = None
        if params.mode == "off" or why_not(state, request, slot.sampler is not None
                                           and slot.sampler.attached):
            return
        draft_model = state.draft is not None and params.mode in ("auto", "draft")
        evidence = self.book.start()
        # A draft model this model rarely agreed with is probed less often from the start.
        alpha = evidence[DRAFT_SOURCE].alpha()
        probe_after = PROBE_AFTER if alpha >= 0.3 else int(PROBE_AFTER * 0.3 / max(alpha, 0.05))
        slot.spec = RequestSpeculation(
            ngram=params.mode in ("auto", "ngram"), draft_model=draft_model,
            n_max=params.n_max, n_min=params.n_min, p_min=params.p_min,
            evidence=evidence, prompt=slot.prompt, probe_after=probe_after)

    # -- before the decode -----------------------------------------------------------------
    def propose(self, state: LoadedState, generating: list[Slot], costs: StepCosts
                ) -> dict[Slot, list[int]]:
        """Drafts for this step, by slot (their next token is not in the cache yet)."""
        if not generating or costs.decode_step <= 0.0:
            return {}
        busy = sum(1 for s in state.slots if s.busy)
        if busy >= len(state.slots) > 1:
            return {}  # the batch is full of streams: their tokens fill the step already
        ctx = state.ctx
        room = ctx.batch_capacity - len(generating)
        size = len(generating)  # the step's tokens so far: every stream's next one
        marginal = min(costs.per_prompt_token, UNTIMED_DRAFT_SHARE * costs.decode_step)
        by_size = costs.by_size

        overhead = costs.overhead  # per step, whatever its size: drafting saves steps

        def step_s(n: int) -> float:
            return by_size.seconds(n, marginal) + overhead

        out: dict[Slot, list[int]] = {}
        wants: list[tuple[Slot, DraftRequest]] = []
        for slot in generating:
            spec = slot.spec
            if spec is None or slot.pending_token is None:
                continue
            limit = self._limit(state, slot, spec, room)
            if limit < 1:
                continue
            found = None
            if spec.ngram:
                index = spec.ngram_index()
                self._settle(spec)
                found = index.lookup(min(limit, spec.n_max or NGRAM_MAX_DRAFT))
            if found is not None:
                source = f"ngram{found.band}"
                k = spec.pinned(len(found.tokens)) if spec.pinned_length else draft_length(
                    spec.evidence[source].alpha(), len(found.tokens), step_s=step_s,
                    size=size, others=size - 1, n_min=spec.n_min)
                if k:
                    out[slot] = found.tokens[:k]
                    spec.source = source
                    room -= k
                    size += k
                    continue
                spec.pass_up(found.tokens, source)
            if spec.draft_model and state.draft is not None:
                n = self._draft_model_length(state, spec, costs, step_s, size,
                                             min(limit, spec.n_max or DRAFT_MODEL_MAX_DRAFT))
                if n:
                    context = [*slot.cached, slot.pending_token]
                    wants.append((slot, DraftRequest(slot.seq_id, context, n, spec.p_min)))
                    room -= n
                    size += n
        if wants and state.draft is not None:
            drafted = state.draft.draft([w for _, w in wants])
            for slot, want in wants:
                tokens = drafted.get(want.seq_id) or []
                if tokens and len(tokens) >= (slot.spec.n_min if slot.spec else 0):
                    out[slot] = tokens
                    assert slot.spec is not None
                    slot.spec.source = DRAFT_SOURCE
        return out

    def _settle(self, spec: RequestSpeculation) -> None:
        """Learn from the request's shadow draft, once the reply has gone past it."""
        settled = spec.settle_shadow()
        if settled is not None:
            source, accepted, rejected = settled
            spec.evidence[source].add(accepted, rejected)
            self.book.learn(source, accepted, rejected)

    def _limit(self, state: LoadedState, slot: Slot, spec: RequestSpeculation, room: int
               ) -> int:
        """Most tokens this slot may draft now: batch room, reply limit, context room."""
        limit = room
        if slot.max_tokens is not None:
            limit = min(limit, slot.max_tokens - slot.n_generated - 1)
        return min(limit, state.info.n_ctx - len(slot.cached) - 3)

    def _draft_model_length(self, state: LoadedState, spec: RequestSpeculation,
                            costs: StepCosts, step_s: Callable[[int], float], size: int,
                            limit: int) -> int:
        assert state.draft is not None
        if spec.pinned_length:
            return spec.pinned(limit)
        draft_step = state.draft.step_s or costs.decode_step / 4
        n = draft_length(spec.evidence[DRAFT_SOURCE].alpha(), limit, step_s=step_s,
                         size=size, others=size - 1, draft_step_s=draft_step,
                         n_min=spec.n_min)
        if n:
            spec.skipped = 0
            return n
        spec.skipped += 1
        probe = min(PROBE_TOKENS, limit)
        if probe < max(1, spec.n_min):
            return 0
        # A probe costs the longer check, the draft model's steps and its catching up with
        # the reply (about a step of it for the tokens since its last draft): it waits until
        # that is a small share (PROBE_BUDGET) of the time decoding went on without it.
        step = step_s(size)
        cost = step_s(size + probe) - step + (probe + 1) * draft_step
        wait = max(spec.probe_after, int(cost / (PROBE_BUDGET * step)) if step > 0 else 0)
        if spec.skipped >= wait:  # try again now and then: things change
            spec.skipped = 0
            spec.probe_after = wait * 2
            return probe
        return 0

    # -- after the decode ------------------------------------------------------------------
    def check(self, state: LoadedState, slot: Slot) -> list[int]:
        """The tokens this step produced for ``slot``: its chain's picks at the positions of
        its next token and its drafts, up to and including the first pick that differs from
        the draft. Rejected guesses leave the cache; the evidence learns the outcome."""
        assert slot.sampler is not None
        ctx = state.ctx
        draft, rows = slot.draft, slot.draft_rows
        token = slot.sampler.sample(ctx, slot.logits_index)
        tokens = [token]
        for guess, row in zip(draft, rows, strict=True):
            if token != guess:
                break
            token = slot.sampler.sample(ctx, row)
            tokens.append(token)
        accepted = len(tokens) - 1
        keep = len(slot.cached) - len(draft) + accepted
        slot.draft, slot.draft_rows = [], []
        if keep < len(slot.cached):
            if not ctx.seq_remove(slot.seq_id, keep, -1):
                raise GenerationFailed("llama.cpp could not take rejected guesses back out of "
                                       "this model's cache.")
            del slot.cached[keep:]
        slot.n_drafted += len(draft)
        slot.n_accepted += accepted
        spec = slot.spec
        if spec is not None:
            rejected = accepted < len(draft)
            spec.evidence[spec.source].add(accepted, rejected)
            self.book.learn(spec.source, accepted, rejected)
            if spec.source == DRAFT_SOURCE and spec.evidence[DRAFT_SOURCE].alpha() > 0.3:
                spec.probe_after = PROBE_AFTER
        return tokens

    def learn_step(self, elapsed: float, costs: StepCosts, n_generating: int, n_prompt: int,
                   n_draft: int) -> None:
        """Time a step with nothing but generating streams (and their drafts) in it: the price
        of a step of its size, which drafts are weighed with."""
        if n_generating and not n_prompt:
            costs.by_size.learn(n_generating + n_draft, elapsed)
