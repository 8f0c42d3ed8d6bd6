"""Fitting a prompt into the context window according to an ``OverflowPolicy``.

Pure functions: the engine passes in a ``count_tokens`` that renders the chat template and
tokenizes. That is expensive (a template render plus a tokenize of the whole conversation), so
the search for how many messages to drop is a binary search, calling it O(log n) times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.engine.types import ChatMessage, OverflowPolicy
from backend.errors import ContextTooLong

CountTokens = Callable[[Sequence[ChatMessage]], int]

#: Tokens kept free for the reply when the request does not say how long it may be.
DEFAULT_REPLY_RESERVE = 512

_OTHER_POLICIES = "pick the truncate_middle or rolling_window overflow policy"


@dataclass(frozen=True)
class FitResult:
    messages: tuple[ChatMessage, ...]
    dropped: int  # messages removed to make it fit
    prompt_tokens: int  # count_tokens(messages), so the caller need not count again


def prompt_budget(n_ctx: int, max_tokens: int | None) -> int:
    """Tokens the prompt may use: the context minus room for the reply (at least 1)."""
    wanted = max_tokens if max_tokens is not None else DEFAULT_REPLY_RESERVE
    # Never reserve more than half the context: a huge max_tokens should not leave the prompt
    # no room at all; generation simply stops at "length" when the context fills up.
    reserve = max(0, min(wanted, n_ctx // 2))
    return max(1, n_ctx - reserve)


def fit_messages(
    messages: Sequence[ChatMessage],
    count_tokens: CountTokens,
    budget: int,
    policy: OverflowPolicy,
) -> FitResult:
    """Return the messages to render so that the prompt takes at most ``budget`` tokens.

    Raises ``ContextTooLong`` under ``OverflowPolicy.STOP`` when it does not fit, and under any
    policy when even the system prompt plus the latest message does not fit.
    """
    msgs = tuple(messages)
    total = count_tokens(msgs)
    if total <= budget:
        return FitResult(msgs, 0, total)

    if policy == OverflowPolicy.STOP or not msgs:
        over = total - budget
        raise ContextTooLong(
            f"This conversation is {total:,} tokens, {over:,} over the {budget:,} tokens the "
            f"context leaves for the prompt; start a new chat, raise the context length, "
            f"or {_OTHER_POLICIES}."
        )

    n = len(msgs)
    # Leading system messages are always kept. The last message is always kept too, even if it
    # happens to be a system message, so the system prefix stops short of it.
    sys_end = 0
    while sys_end < n - 1 and msgs[sys_end].role == "system":
        sys_end += 1
    system = msgs[:sys_end]

    # Token counts per candidate, so no candidate is ever counted twice.
    cache: dict[tuple[int, int], int] = {}

    def candidate(head: tuple[ChatMessage, ...], start: int) -> tuple[ChatMessage, ...]:
        return head + msgs[start:]

    def count(head: tuple[ChatMessage, ...], head_key: int, start: int) -> int:
        key = (head_key, start)
        if key not in cache:
            cache[key] = count_tokens(candidate(head, start))
        return cache[key]

    def fit_tail(head: tuple[ChatMessage, ...], head_key: int, lo: int) -> FitResult | None:
        """Keep ``head`` + the longest tail ``msgs[start:]`` with ``start >= lo`` that fits."""
        last = n - 1
        if lo > last or count(head, head_key, last) > budget:
            return None
        # Smallest start that fits; counts shrink as start grows, so binary search works.
        # Invariant: start ``hi`` fits; every start < ``lo`` was either excluded or too big.
        hi = last
        while lo < hi:
            mid = (lo + hi) // 2
            if count(head, head_key, mid) <= budget:
                hi = mid
            else:
                lo = mid + 1
        start = hi
        # Starting the kept tail at an assistant (or tool) message would leave a reply whose
        # question was dropped; move forward to the next user message if there is one. A
        # shorter tail still fits. Not needed when nothing between head and tail was dropped.
        if start > head_key:
            nxt = next((i for i in range(start, n) if msgs[i].role == "user"), None)
            if nxt is not None:
                start = nxt
        kept = candidate(head, start)
        return FitResult(kept, n - len(kept), count(head, head_key, start))

    result: FitResult | None = None
    if policy == OverflowPolicy.TRUNCATE_MIDDLE:
        # The first user message usually states the task; keep it (and nothing else from the
        # start besides the system prompt), then as many of the latest turns as fit.
        first_user = next((i for i in range(sys_end, n - 1) if msgs[i].role == "user"), None)
        if first_user is not None:
            result = fit_tail((*system, msgs[first_user]), first_user + 1, first_user + 1)
    # Rolling window, and the fallback when the first user message leaves no room for the
    # latest one: the latest message matters more than the first.
    if result is None:
        result = fit_tail(system, sys_end, sys_end)
    if result is not None:
        return result

    minimal = count(system, sys_end, n - 1)
    over = minimal - budget
    with_system = " together with the system prompt" if system else ""
    raise ContextTooLong(
        f"The latest message alone is too long: it is {minimal:,} tokens{with_system}, "
        f"{over:,} over the {budget:,} tokens the context leaves for the prompt; shorten it "
        f"or raise the context length."
    )


def fit_tokens(
    tokens: Sequence[int],
    budget: int,
    policy: OverflowPolicy,
    keep_head: int = 0,
) -> tuple[list[int], int]:
    """Fit a raw (completion) prompt: returns (tokens to evaluate, tokens dropped).

    Without turns to drop, both truncating policies keep the first ``keep_head`` tokens (e.g.
    BOS) and the latest tokens that fit: the end of the prompt is what the reply continues.
    """
    n = len(tokens)
    if n <= budget:
        return list(tokens), 0
    over = n - budget
    if policy == OverflowPolicy.STOP:
        raise ContextTooLong(
            f"This prompt is {n:,} tokens, {over:,} over the {budget:,} tokens the context "
            f"leaves for it; shorten it, raise the context length, or {_OTHER_POLICIES}."
        )
    head = max(0, min(keep_head, n))
    tail = budget - head
    if tail < 1:
        raise ContextTooLong(
            f"The context leaves only {budget:,} tokens for the prompt, too few to keep any of "
            f"it; raise the context length or lower the maximum reply length."
        )
    kept = list(tokens[:head]) + list(tokens[n - tail :])
    return kept, n - len(kept)
