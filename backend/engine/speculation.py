"""When speculation pays, and how far to draft: decisions from evidence (engine thread only).

A drafted token costs a share of the step that checks it and, with a draft model, a step of
the draft model. It pays back only when the model agrees with it. So each source of drafts
keeps its *acceptance*: drafted tokens the model agreed with, against rounds that ended on a
wrong guess. Under a geometric model that is the chance ``alpha`` that the next drafted token
is right given the ones before it were, and K drafted tokens are worth
``1 + alpha + ... + alpha**K`` tokens for the price of a step with K more tokens in it.
``draft_length`` prices that step from the step times measured for each batch size
(``step_costs.SizeCosts``: on a CPU a few tokens cost little more than one, then each adds a
share; on a GPU a dozen cost about as much as one), picks the K that maximises tokens per
second *of the whole batch* (other streams in the step wait for the longer step too) and
answers 0 when no K beats not drafting by ``MIN_GAIN``.

N-gram drafts cost nothing to find, so their acceptance is learnt also when they are not
checked: a draft passed up is kept as a ``Shadow`` and scored against the reply once the
reply has gone past it. A source priced out by a few unlucky rounds is so seen to be right
again (an edit's reply going back to copying) without a probe. A draft model's guesses cost a
step of it, so a draft model switched off is probed now and then, less often the less it was
accepted on this model and the more a probe costs against a step.

Evidence is kept per request (``RequestSpeculation``), started from what the engine learnt on
earlier requests with this model (``AcceptanceBook``), itself pulled toward fixed priors so
that one unlucky request does not switch a source off for all that follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from backend.engine.ngram import BANDS, NgramIndex

# A draft must promise at least this much more throughput than not drafting: the estimates
# are noisy, and a draft that merely breaks even only adds variance (free chat, where short
# matches are right now and then, must not come out slower than no speculation).
MIN_GAIN = 1.1
DRAFT_SOURCE = "draft"
# Prior acceptance (alpha, weight in rounds) of each source: n-gram drafts by match band, then
# the draft model. Short n-gram matches in prose are mostly wrong; long ones are copies.
PRIORS: dict[str, tuple[float, float]] = {
    **{f"ngram{b}": (a, 4.0) for b, a in enumerate((0.25, 0.5, 0.7, 0.85))},
    DRAFT_SOURCE: (0.5, 4.0)}
assert len(PRIORS) == len(BANDS) + 2
# Rounds (accepted tokens plus rejections) of the engine's memory a new request starts from,
# at most: enough to outweigh the prior, so that a draft model that was always right on this
# model is tried at once and one never right is not. On a GPU a 1B draft's step costs ~2/3
# of an 8B target's, so only alpha > ~0.95 pays by MIN_GAIN: 24 rounds capped a draft that
# was always right at 0.93 and it was never used (H200, 0/0 drafted); 64 reach 0.97. A
# request whose text the draft gets wrong still switches it off after ~10 wrong rounds.
MAX_SHARED_WEIGHT = 64.0
BOOK_DECAY = 0.98  # the engine's memory fades: recent requests count more
PROBE_AFTER = 8  # skipped chances before a switched-off draft model is tried once more
# ... at the least: a probe (catching the draft model up, its step, the longer check) is kept
# to about this share of the time spent decoding, and the wait doubles after each probe
# that finds nothing accepted.
PROBE_BUDGET = 0.02
SHADOW_TOKENS = 16  # the longest n-gram draft scored in the shadow


@dataclass
class Acceptance:
    """Drafted tokens accepted, and rejections (rounds ended by a wrong guess)."""

    accepted: float = 0.0
    rejected: float = 0.0

    @property
    def rounds(self) -> float:
        return self.accepted + self.rejected

    def alpha(self) -> float:
        total = self.accepted + self.rejected
        return self.accepted / total if total > 0 else 0.0

    def add(self, accepted: int, rejected: bool) -> None:
        self.accepted += accepted
        self.rejected += 1.0 if rejected else 0.0


class AcceptanceBook:
    """What the engine learnt about each source on the model loaded now."""

    def __init__(self) -> None:
        self.by_source = {name: Acceptance(a * w, (1 - a) * w)
                          for name, (a, w) in PRIORS.items()}

    def learn(self, source: str, accepted: int, rejected: bool) -> None:
        book = self.by_source[source]
        book.accepted *= BOOK_DECAY
        book.rejected *= BOOK_DECAY
        book.add(accepted, rejected)

    def start(self) -> dict[str, Acceptance]:
        """A new request's evidence: the fixed prior plus (at most ``MAX_SHARED_WEIGHT``
        rounds of) what earlier requests saw."""
        out = {}
        for name, (a, w) in PRIORS.items():
            shared = self.by_source[name]
            scale = min(1.0, MAX_SHARED_WEIGHT / shared.rounds) if shared.rounds else 0.0
            out[name] = Acceptance(a * w + shared.accepted * scale,
                                   (1 - a) * w + shared.rejected * scale)
        return out


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens one step yields with ``k`` drafted: the model's own plus the accepted prefix."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def draft_length(alpha: float, limit: int, *, step_s: Callable[[int], float], size: int,
                 others: int = 0, draft_step_s: float = 0.0, n_min: int = 0) -> int:
    """The number of tokens to draft (up to ``limit``) that maximises the batch's tokens per
    second, or 0 when drafting doesn't beat not drafting by ``MIN_GAIN``.

    ``step_s(n)``: the time of a step of ``n`` tokens (``step_costs.SizeCosts``); ``size``:
    the tokens the step holds without this draft (every generating stream's next token and
    the drafts chosen for other streams); ``others``: tokens those other streams get from
    it either way; ``draft_step_s``: the draft model's step (0 for n-gram drafts).
    """
    base = step_s(size)
    if limit < max(1, n_min) or base <= 0.0:
        return 0
    best_k, best = 0, (others + 1) / base * MIN_GAIN
    power, tokens = 1.0, 1.0
    for k in range(1, limit + 1):
        power *= alpha
        tokens += power
        cost = step_s(size + k) + k * draft_step_s
        rate = (others + tokens) / cost
        if rate > best and k >= n_min:
            best_k, best = k, rate
        # Further tokens add less and less and cost at least as much: once a few in a row
        # did not help, none will.
        if power < 1e-3 or (best_k and k - best_k >= 8):
            break
    return best_k


@dataclass
class Shadow:
    """An n-gram draft that was found but not checked: scored against the reply once the
    reply has gone past it, so a source's acceptance is learnt without paying for it."""

    start: int  # position of its first token in the request's tokens
    tokens: list[int]
    source: str


@dataclass
class RequestSpeculation:
    """One request's speculation: its sources, its evidence, its n-gram index."""

    ngram: bool
    draft_model: bool
    n_max: int | None
    n_min: int
    p_min: float
    evidence: dict[str, Acceptance]
    prompt: list[int]
    index: NgramIndex | None = None  # built at the first lookup, not before the first token
    source: str = ""  # where this step's draft came from
    skipped: int = 0  # chances the draft model passed up since it last drafted
    probe_after: int = PROBE_AFTER
    pending: list[int] = field(default_factory=list)  # sampled tokens not yet indexed
    shadow: Shadow | None = None  # an n-gram draft passed up, waiting to be scored

    @property
    def pinned_length(self) -> bool:
        """The request fixed the draft length (``n_min == n_max``): draft exactly that many
        whenever there is a draft, whatever the evidence (as llama-server does; benchmarks
        use it to measure a draft that is never accepted)."""
        return bool(self.n_max) and self.n_min == self.n_max

    def pinned(self, available: int) -> int:
        return self.n_min if available >= self.n_min else 0

    def observe(self, tokens: list[int]) -> None:
        self.pending.extend(tokens)

    def ngram_index(self) -> NgramIndex:
        if self.index is None:
            self.index = NgramIndex(self.prompt)
        if self.pending:
            self.index.extend(self.pending)
            self.pending.clear()
        return self.index

    def pass_up(self, tokens: list[int], source: str) -> None:
        """An n-gram draft found and not checked: score it later (``settle_shadow``)."""
        if self.shadow is None and self.index is not None:
            self.shadow = Shadow(len(self.index.tokens), tokens[:SHADOW_TOKENS], source)

    def settle_shadow(self) -> tuple[str, int, bool] | None:
        """(source, accepted, rejected) of the shadow draft once the reply has gone past it,
        as if it had been checked: the tokens it got right before the first it got wrong."""
        shadow, index = self.shadow, self.index
        if shadow is None or index is None:
            return None
        seen = index.tokens[shadow.start:shadow.start + len(shadow.tokens)]
        accepted = 0
        for guess, token in zip(shadow.tokens, seen, strict=False):
            if guess != token:
                break
            accepted += 1
        if accepted == len(seen) < len(shadow.tokens):
            return None  # right so far, and the reply hasn't got past it yet
        self.shadow = None
        return shadow.source, accepted, accepted < len(shadow.tokens)
