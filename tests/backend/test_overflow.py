from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from backend.engine.overflow import FitResult, fit_messages, fit_tokens, prompt_budget
from backend.engine.types import ChatMessage, OverflowPolicy
from backend.errors import ContextTooLong

STOP = OverflowPolicy.STOP
MIDDLE = OverflowPolicy.TRUNCATE_MIDDLE
ROLLING = OverflowPolicy.ROLLING_WINDOW


class FakeCounter:
    """Words plus 4 tokens of template overhead per message; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: Sequence[ChatMessage]) -> int:
        self.calls += 1
        return sum(len(m.content.split()) + 4 for m in messages)


def msg(spec: str) -> ChatMessage:
    """'u3' -> a user message of 3 words (7 tokens); roles s/u/a/t."""
    role = {"s": "system", "u": "user", "a": "assistant", "t": "tool"}[spec[0]]
    return ChatMessage(role, " ".join(["w"] * int(spec[1:])))  # type: ignore[arg-type]


def conv(specs: str) -> list[ChatMessage]:
    return [msg(s) for s in specs.split()]


def kept_indices(original: list[ChatMessage], result: FitResult) -> list[int]:
    # Messages compare by value, so match identity-wise in order.
    out: list[int] = []
    j = 0
    for i, m in enumerate(original):
        if j < len(result.messages) and result.messages[j] is m:
            out.append(i)
            j += 1
    assert j == len(result.messages)
    return out


# (conversation, budget, policy, expected kept indices)
FIT_CASES = [
    # fits: unchanged under every policy
    ("s6 u6 a6 u6", 40, STOP, [0, 1, 2, 3]),
    ("s6 u6 a6 u6", 40, MIDDLE, [0, 1, 2, 3]),
    ("s6 u6 a6 u6", 40, ROLLING, [0, 1, 2, 3]),
    # each message is 10 tokens
    ("s6 u6 a6 u6 a6 u6 a6 u6", 50, MIDDLE, [0, 1, 5, 6, 7]),
    ("s6 u6 a6 u6 a6 u6 a6 u6", 50, ROLLING, [0, 5, 6, 7]),  # 4-msg tail starts at a6
    ("s6 u6 a6 u6 a6 u6 a6 u6", 30, MIDDLE, [0, 1, 7]),
    ("s6 u6 a6 u6 a6 u6 a6 u6", 20, MIDDLE, [0, 7]),  # first user gives way to the latest
    ("s6 u6 a6 u6 a6 u6 a6 u6", 20, ROLLING, [0, 7]),
    # several leading system messages all kept
    ("s6 s6 u6 a6 u6 a6 u6", 50, MIDDLE, [0, 1, 2, 6]),
    ("s6 s6 u6 a6 u6 a6 u6", 50, ROLLING, [0, 1, 4, 5, 6]),
    # no system message
    ("u6 a6 u6 a6 u6", 30, MIDDLE, [0, 4]),  # a tail "a6 u6" would start orphaned
    ("u6 a6 u6 a6 u6", 30, ROLLING, [2, 3, 4]),
    # assistant greeting before the first user: "nothing else from the start"
    ("s6 a6 u6 a6 u6", 40, MIDDLE, [0, 2, 3, 4]),
    # tail of only assistant/tool messages: nothing else fits, keep the longest tail
    ("s6 u6 a6 t6 a6", 30, ROLLING, [0, 3, 4]),
    # last message is an assistant message (continue generation) and is kept
    ("s6 u6 a6 u6 a6", 40, MIDDLE, [0, 1, 3, 4]),
]


@pytest.mark.parametrize(("specs", "budget", "policy", "expected"), FIT_CASES)
def test_fit_messages(specs: str, budget: int, policy: OverflowPolicy, expected: list[int]) -> None:
    messages = conv(specs)
    counter = FakeCounter()
    result = fit_messages(messages, counter, budget, policy)
    assert kept_indices(messages, result) == expected
    assert result.dropped == len(messages) - len(expected)
    assert result.prompt_tokens == FakeCounter()(result.messages)
    assert result.prompt_tokens <= budget
    assert result.messages[-1] is messages[-1]


def test_stop_policy_raises_with_numbers() -> None:
    messages = [ChatMessage("user", " ".join(["w"] * 2341))]  # 2,345 tokens
    with pytest.raises(ContextTooLong) as info:
        fit_messages(messages, FakeCounter(), 2000, STOP)
    text = info.value.user_message
    assert "2,345" in text and "345 over" in text and "2,000" in text
    assert "truncate_middle" in text and "rolling_window" in text


@pytest.mark.parametrize("policy", [MIDDLE, ROLLING])
def test_latest_message_alone_too_long(policy: OverflowPolicy) -> None:
    messages = conv("s6 u6 a6 u40")  # system 10 + last 44 = 54
    with pytest.raises(ContextTooLong) as info:
        fit_messages(messages, FakeCounter(), 50, policy)
    text = info.value.user_message
    assert "latest message" in text and "4 over" in text
    assert "shorten" in text and "context length" in text


@pytest.mark.parametrize("policy", [MIDDLE, ROLLING])
def test_count_tokens_calls_bounded(policy: OverflowPolicy) -> None:
    n = 200
    messages = [msg("s6")] + [msg("u6" if i % 2 == 0 else "a6") for i in range(n - 1)]
    counter = FakeCounter()
    result = fit_messages(messages, counter, 500, policy)
    assert result.prompt_tokens <= 500
    assert result.dropped > 0
    assert counter.calls <= 2 * math.log2(n) + 3


def test_fits_calls_once() -> None:
    counter = FakeCounter()
    fit_messages(conv("s1 u1"), counter, 100, STOP)
    assert counter.calls == 1


@pytest.mark.parametrize(
    ("n", "budget", "policy", "keep_head", "expected", "dropped"),
    [
        (5, 10, STOP, 0, [0, 1, 2, 3, 4], 0),
        (10, 4, MIDDLE, 1, [0, 7, 8, 9], 6),
        (10, 4, ROLLING, 0, [6, 7, 8, 9], 6),
        (10, 10, ROLLING, 1, list(range(10)), 0),
    ],
)
def test_fit_tokens(
    n: int,
    budget: int,
    policy: OverflowPolicy,
    keep_head: int,
    expected: list[int],
    dropped: int,
) -> None:
    assert fit_tokens(list(range(n)), budget, policy, keep_head) == (expected, dropped)


def test_fit_tokens_stop_raises() -> None:
    with pytest.raises(ContextTooLong) as info:
        fit_tokens(list(range(1500)), 1000, STOP)
    assert "500 over" in info.value.user_message
    assert "1,000" in info.value.user_message


def test_fit_tokens_no_room_beyond_head() -> None:
    with pytest.raises(ContextTooLong):
        fit_tokens(list(range(10)), 1, ROLLING, keep_head=1)


@pytest.mark.parametrize(
    ("n_ctx", "max_tokens", "expected"),
    [
        (4096, None, 4096 - 512),
        (4096, 100, 3996),
        (4096, 10_000, 2048),
        (512, None, 256),
        (1, None, 1),
        (1, 5, 1),
    ],
)
def test_prompt_budget(n_ctx: int, max_tokens: int | None, expected: int) -> None:
    assert prompt_budget(n_ctx, max_tokens) == expected
