"""What a decode step costs, learnt from real steps (engine thread only).

A step's cost is mostly fixed (the weights are read once whatever the batch), so dividing a
mixed step's time by its tokens would overstate a prompt token's cost several times and feed
prompts in crumbs. These running estimates keep the step's base time and what each prompt
token adds on top apart; the scheduler sizes prompt chunks and hand-off waits with them.

``SizeCosts`` keeps the time of steps by their size (tokens in the step, every one wanting
logits: streams' next tokens and drafted guesses): what speculation prices a draft with. The
curve is not a line. On two CPU cores a 135M model's step of 3 tokens costs ~1.3 of a
1-token step (the weights are read once, and reading them is the step), from ~5 tokens on
every token adds ~a third of a step (arithmetic is the step); on a GPU a dozen tokens cost
about as much as one. So each size is measured where it is used, and sizes not measured yet
are priced from the nearest ones.
"""

from __future__ import annotations

import bisect

MIN_PREFILL_CHUNK = 4
MAX_SIZE = 160  # step sizes timed one by one; larger ones are priced by extrapolation


class SizeCosts:
    """Seconds of a step of ``n`` tokens that all want logits (no prompt tokens), by ``n``."""

    WEIGHT = 0.25  # how far one step moves its size's estimate
    SPIKE = 3.0  # one step counts as at most this many times the estimate (a preempted step)
    # A size not timed for this many steps is priced as if never timed (from its neighbours)
    # until it is timed again: a price taken while the machine was busy (two threads' spinning
    # barriers on a loaded machine make single steps 10x slower) can't keep a draft length
    # out of use, and so unmeasured, for good. Sizes below every fresh one keep their price:
    # they are the steps without drafts, timed again as soon as drafting pauses.
    STALE_STEPS = 64

    def __init__(self) -> None:
        self._seen: dict[int, float] = {}
        self._when: dict[int, int] = {}  # the step count at each size's last timing
        self._clock = 0
        self._sizes: list[int] = []  # measured sizes, ascending (rebuilt after learning)
        self._costs: list[float] = []  # their costs, made non-decreasing in size
        self._dirty = False

    def learn(self, n: int, elapsed: float) -> None:
        if not 1 <= n <= MAX_SIZE or elapsed <= 0.0:
            return
        self._clock += 1
        old = self._seen.get(n) if self._clock - self._when.get(n, 0) <= self.STALE_STEPS \
            else None
        self._seen[n] = elapsed if old is None else old + self.WEIGHT * (
            min(elapsed, self.SPIKE * old) - old)
        self._when[n] = self._clock
        self._dirty = True

    def measured(self, n: int) -> bool:
        return n in self._seen and self._clock - self._when[n] <= self.STALE_STEPS

    def seconds(self, n: int, marginal_s: float) -> float:
        """A step of ``n`` tokens: measured, else interpolated between the nearest measured
        sizes, else the largest measured plus ``marginal_s`` (or the measured slope, if
        steeper) per token beyond it. 0.0 before any step was timed."""
        if self._dirty:
            self._rebuild()
        sizes, costs = self._sizes, self._costs
        if not sizes:
            return 0.0
        i = bisect.bisect_left(sizes, n)
        if i < len(sizes) and sizes[i] == n:
            return costs[i]
        if i == 0:  # smaller than any measured size: priced as the smallest (an upper bound)
            return costs[0]
        if i < len(sizes):
            lo, hi = sizes[i - 1], sizes[i]
            return costs[i - 1] + (costs[i] - costs[i - 1]) * (n - lo) / (hi - lo)
        slope = marginal_s
        if len(sizes) >= 2:
            slope = max(slope, (costs[-1] - costs[-2]) / (sizes[-1] - sizes[-2]))
        return costs[-1] + (n - sizes[-1]) * slope

    def _rebuild(self) -> None:
        fresh = [n for n in self._seen if self.measured(n)]
        floor = min(fresh, default=MAX_SIZE + 1)
        self._sizes = sorted(n for n in self._seen if n < floor or self.measured(n))
        costs = [self._seen[n] for n in self._sizes]
        # A larger step can't be cheaper: a noisy reading at one size is capped by a cheaper
        # reading at a larger one (so one preempted step doesn't price a size out for good).
        for i in range(len(costs) - 2, -1, -1):
            costs[i] = min(costs[i], costs[i + 1])
        self._costs = costs
        self._dirty = False


class StepCosts:
    def __init__(self) -> None:
        self.decode_step = 0.0  # seconds of a step with no prompt tokens in it
        self.per_prompt_token = 0.002  # seconds each prompt token adds to a step
        self._prompt_steps = 0  # steps the prompt speed was learnt from
        self.by_size = SizeCosts()  # steps without prompt tokens, by their size
        # Seconds a step of generating streams spends outside llama_decode (drafting, filling
        # the batch, sampling, handing text over): paid once per step however many tokens it
        # yields, so a draft that yields more tokens a step saves it too. With a small model
        # it is a third to a half of the step (measured on the tiny synthetic pair: 0.33 of
        # 0.69 ms), and a draft priced on llama_decode's time alone never looked worth it.
        self.overhead = 0.0

    def learn_overhead(self, seconds: float) -> None:
        if seconds > 0.0:
            self.overhead = seconds if self.overhead == 0.0 else \
                0.8 * self.overhead + 0.2 * min(seconds, 3.0 * self.overhead)

    def learn(self, elapsed: float, n_generating: int, n_prompt: int, n_draft: int = 0
              ) -> None:
        """Learn the prompt speed from real steps: the marginal cost of a prompt token.
        Drafted tokens (speculation) are priced by ``by_size``, which the speculator teaches;
        a step with drafts and no prompt teaches nothing here, one with both counts its drafts
        as prompt tokens."""
        if n_draft and not n_prompt:
            return
        n_prompt += n_draft
        if n_prompt == 0:
            if n_generating:
                self.decode_step = (elapsed if self.decode_step == 0.0 else
                                    0.8 * self.decode_step + 0.2 * elapsed)
            return
        if n_prompt < MIN_PREFILL_CHUNK:
            return
        base = self.decode_step if n_generating else 0.0
        per_token = max(elapsed - base, 0.0) / n_prompt
        per_token = max(per_token, 1e-6)  # a noisy step must not promise infinite room
        # The first steps after a load replace the guess quickly (a GPU reads prompts a
        # hundred times faster than two CPU cores); later ones are smoothed.
        weight = max(0.3, 1.0 / (self._prompt_steps + 1))
        self._prompt_steps += 1
        self.per_prompt_token = (1 - weight) * self.per_prompt_token + weight * per_token
