"""When speculation pays, and how far to draft: decisions from evidence (engine thread only).

A drafted token costs a share of the step that checks it (on two CPU cores a 135M model adds
a fifth of a step per token; on a GPU a dozen tokens cost about as much as one) and, with a
draft model, a step of the draft model. It pays back only when the model agrees with it. So
each source of drafts keeps its *acceptance*: drafted tokens the model agreed with, against
rounds that ended on a wrong guess. Under a geometric model that is the chance ``alpha`` that
the next drafted token is right given the ones before it were, and K drafted tokens are worth
``1 + alpha + ... + alpha**K`` tokens for the price of a step with K more tokens in it.
``draft_length`` picks the K that maximises tokens per second *of the whole batch* (other
streams in the step wait for the longer step too) and answers 0 when no K beats not drafting
by ``MIN_GAIN``: speculation then stays off for that source until the evidence changes.

Evidence is kept per request (``RequestSpeculation``), started from what the engine learnt on
earlier requests with this model (``AcceptanceBook``), itself pulled toward fixed priors so
that one unlucky request does not switch a source off for all that follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.engine.ngram import BANDS, NgramIndex

# A draft must promise at least this much more throughput than not drafting: the estimates
# are noisy, and a draft that merely breaks even only adds variance.
MIN_GAIN = 1.05
DRAFT_SOURCE = "draft"
# Prior acceptance (alpha, weight in rounds) of each source: n-gram drafts by match band, then
# the draft model. Short n-gram matches in prose are mostly wrong; long ones are copies.
PRIORS: dict[str, tuple[float, float]] = {
    **{f"ngram{b}": (a, 4.0) for b, a in enumerate((0.25, 0.5, 0.7, 0.85))},
    DRAFT_SOURCE: (0.5, 4.0)}
assert len(PRIORS) == len(BANDS) + 2
MAX_SHARED_WEIGHT = 8.0  # rounds of the engine's memory a new request starts from, at most
BOOK_DECAY = 0.98  # the engine's memory fades: recent requests count more
PROBE_AFTER = 8  # skipped chances before a switched-off draft model is tried once more


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


@dataclass
class VerifyCost:
    """What K drafted tokens add to a step: ``fixed + per_token * K`` seconds, fitted by least
    squares over recent checking steps (older ones fade), starting from the prompt speed."""

    fixed: float = 0.0
    per_token: float = 0.0
    _sums: list[float] = field(default_factory=lambda: [0.0] * 5)  # n, x, y, xx, xy
    DECAY = 0.97

    def learn(self, n_draft: int, extra_s: float) -> None:
        s = self._sums
        for i in range(5):
            s[i] *= self.DECAY
        x, y = float(n_draft), extra_s
        s[0] += 1
        s[1] += x
        s[2] += y
        s[3] += x * x
        s[4] += x * y
        n, sx, sy, sxx, sxy = s
        det = n * sxx - sx * sx
        if n >= 3 and det > 1e-9 * n * n:
            slope = (n * sxy - sx * sy) / det
            self.per_token = max(slope, 1e-6)
            self.fixed = max((sy - slope * sx) / n, 0.0)
        elif sx > 0:  # one draft length so far: all of it per token
            self.per_token = max(sy / sx, 1e-6)
            self.fixed = 0.0

    def seconds(self, n_draft: int, fallback_per_token: float) -> float:
        if self.per_token <= 0.0:
            return n_draft * fallback_per_token
        return self.fixed + n_draft * self.per_token


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens one step yields with ``k`` drafted: the model's own plus the accepted prefix."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def draft_length(alpha: float, limit: int, *, step_s: float, verify_s: VerifyCost,
                 fallback_per_token_s: float, draft_step_s: float = 0.0, others: int = 0,
                 n_min: int = 0) -> int:
    """The number of tokens to draft (up to ``limit``) that maximises the batch's tokens per
    second, or 0 when drafting doesn't beat not drafting by ``MIN_GAIN``.

    ``step_s``: a step without drafts; ``draft_step_s``: the draft model's step (0 for n-gram
    drafts); ``others``: other streams in the step, each getting one token either way.
    """
    if limit < max(1, n_min) or step_s <= 0.0:
        return 0
    best_k, best = 0, (others + 1) / step_s * MIN_GAIN
    power, tokens = 1.0, 1.0
    for k in range(1, limit + 1):
        power *= alpha
        tokens += power
        cost = step_s + verify_s.seconds(k, fallback_per_token_s) + k * draft_step_s
        rate = (others + tokens) / cost
        if rate > best and k >= n_min:
            best_k, best = k, rate
        if power < 1e-3:  # further tokens add nothing but cost
            break
    return best_k


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
