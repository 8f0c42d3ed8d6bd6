"""Randomised checks of the template budget: a seeded fuzzer composes hostile chat templates
(loops, growth, formatting, recursion) and each render ends, ok or stopped by the budget, in
time and in bounded memory; and the sizes the budget measures values with are upper bounds."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from backend.engine.chat_template import ChatTemplate
from backend.engine.template_budget import DEFAULT_LIMITS, RenderBudget, limits_overridden
from backend.engine.template_guards import printf_size
from backend.errors import TemplateError
from tests.backend.hostile_templates import (
    MAX_GROWTH_BYTES,
    MESSAGES,
    budget_stop,
    mark_rss_baseline,
    rss_growth,
)


@pytest.fixture(autouse=True, scope="module")
def _rss_baseline() -> None:
    mark_rss_baseline()


_NUMBERS = (0, 1, 2, 3, 7, 64, 1000, 100_000, 10**6, 10**9, 2**31, -1)
_COUNTS = (0, 1, 2, 7, 64, 1000, 100_000)  # within range()'s own limit
_PRELUDE = (
    "{% set ns = namespace(v='ab', w=[1, 2]) %}"
    "{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{{ m(n - 1) }}{{ ns.v }}{% endif %}"
    "{% endmacro %}"
)


class _Fuzzer:
    """Composes hostile templates from a grammar of loops, growth, formatting and recursion.

    Expressions are typed (text, sequence, number) so that most compositions are valid and
    reach the budget rather than a TypeError; ``ns.v`` and ``ns.w`` feed results back into
    later iterations, which is how templates grow values exponentially.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def count(self) -> str:
        return str(self.rng.choice(_COUNTS))

    def number(self, depth: int = 1) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.7:
            return str(rng.choice(_NUMBERS))
        a, b = self.number(depth - 1), self.number(depth - 1)
        seq, text = self.seq(depth - 1), self.text(depth - 1)
        return rng.choice([f"({a} * {b})", f"({a} ** {b})", f"({seq}|length)", f"({text}|length)",
                           f"({a} + {b})", f"({a} // 7)"])  # fmt: skip

    def text(self, depth: int) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.2:
            return rng.choice(["'ab'", "'é\\n\\t'", "ns.v", "messages[0].content", "bos_token"])
        a, b, n = self.text(depth - 1), self.text(depth - 1), self.number()
        seq, w = self.seq(depth - 1), self.rng.choice(_NUMBERS)  # w: a literal width
        return rng.choice(
            [
                f"({a} * {n})", f"({n} * {a})", f"({a} + {b})", f"({a} ~ {b})", f"({a} ~ {seq})",
                f"({a}).replace('', {b})", f"{a}|replace('a', {b})", f"{a}|center({n})",
                f"({a}).ljust({n})", f"('%{w}s' % {a})", f"('%*s' % ({n}, {a}))",
                f"'{{:>{w}}}'.format({a})", f"'{{0}}{{0}}{{0}}'.format({a})", f"{seq}|join({a})",
                f"({a}).join({seq}|map('string'))", f"{seq}|list|tojson(indent={n})",
                f"{seq}|list|tojson",
                f"{a}|indent({n})", f"{a}|wordwrap({n})", f"{seq}|string", f"({a})[::-1]",
                f"lipsum({n})", f"{a}|format({b})", f"({a}).expandtabs({n})", f"({a}).zfill({n})",
                f"{a}|truncate({n})", f"{seq}|pprint", f"{a}|title", f"{a}|e", f"{a}|urlize",
                f"({a}).upper()", f"m({n})", f"({a} ~ {n})", f"({a})[{n}:]", f"{seq}|first|string",
                f"'%s%s' % ({a}, {seq})", f"{{'k': {a}}}|tojson", f"{seq}|sort|join",
            ]
        )  # fmt: skip

    def seq(self, depth: int) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.2:
            return rng.choice(["messages", "[1, 2]", "ns.w", "range(50)|list", "(1, 'x')"])
        a, b, n = self.seq(depth - 1), self.seq(depth - 1), self.number()
        text = self.text(depth - 1)
        return rng.choice(
            [
                f"({a}|list * {n})", f"({a}|list + {b}|list)", f"[{a}, {b}]", f"({a}, {b})",
                f"[{text}] * {n}",
                f"{text}|list", f"({text}).split()", f"{a}|batch({n}, 0)|list",
                f"{a}|slice({n})|list", f"[{a}, {b}]|sum(start=[])", f"{a}|unique|list",
                f"{a}|map('string')|list", f"({a})[::-1]", f"dict(k={a})|dictsort",
                f"({text}).splitlines()", f"{a}|reverse|list",
                f"{{'k': {a}}}|items|list", f"range({self.count()})", f"({a})[{n}:]",
                f"[{a}]|list", f"[{a} == {b}]", f"[{a} in {b}]", f"namespace(x={a}).x",
            ]
        )  # fmt: skip

    def statements(self, depth: int) -> str:
        return "".join(self.statement(depth) for _ in range(self.rng.randint(1, 3)))

    def statement(self, depth: int) -> str:
        rng = self.rng
        text, seq = self.text(rng.randint(0, 3)), self.seq(rng.randint(0, 2))
        if depth <= 0:
            return rng.choice([f"{{{{ {text} }}}}", f"{{% set ns.v = {text} %}}", "x",
                               f"{{% set ns.w = {seq} %}}"])  # fmt: skip
        body = self.statements(depth - 1)
        return rng.choice(
            [
                f"{{{{ {text} }}}}",
                f"{{% set ns.v = {text} %}}",
                f"{{% set ns.w = {seq} %}}",
                f"{{% for i{depth} in {seq} %}}{body}{{% endfor %}}",
                f"{{% for i{depth} in range({self.count()}) %}}{body}{{% endfor %}}",
                f"{{% if {text} %}}{body}{{% endif %}}",
                f"{{% set x{depth} %}}{body}{{% endset %}}{{% set ns.v = x{depth} %}}",
                f"{{% for x in {seq} recursive %}}{body}{{{{ loop({seq}) }}}}{{% endfor %}}",
                f"{{% filter upper %}}{body}{{% endfilter %}}",
                f"{{% macro k{depth}() %}}{body}{{% endmacro %}}{{{{ k{depth}() ~ k{depth}() }}}}",
            ]
        )

    def template(self) -> str:
        return _PRELUDE + self.statements(3)


FUZZ_CASES = 800
FUZZ_DEADLINE_S = 0.15
FUZZ_MARGIN_S = 0.6
# Smaller caps than the defaults, so that the largest single operation takes milliseconds
# and 800 cases take about 15 s on two cores.
FUZZ_LIMITS = {
    "seconds": FUZZ_DEADLINE_S,
    "text_chars": 200_000,
    "items": 20_000,
    "created_bytes": 16 << 20,
    "slow_filter_chars": 20_000,
}


def test_fuzzed_hostile_templates_finish_in_time_and_bounded() -> None:
    fuzzer = _Fuzzer(seed=20240611)
    outcomes = {"ok": 0, "stopped": 0, "failed": 0}
    slowest = 0.0
    with limits_overridden(**FUZZ_LIMITS) as fuzz_limits:
        for _ in range(FUZZ_CASES):
            source = fuzzer.template()
            started = time.monotonic()
            try:
                text = ChatTemplate(source).render(MESSAGES)
            except TemplateError as error:  # any other exception type fails the test
                outcomes["stopped" if budget_stop(error) else "failed"] += 1
            else:
                outcomes["ok"] += 1
                assert len(text) <= fuzz_limits.text_chars + 8 * 17  # plus the input allowance
            elapsed = time.monotonic() - started
            slowest = max(slowest, elapsed)
            assert elapsed < FUZZ_DEADLINE_S + FUZZ_MARGIN_S, (f"{elapsed:.2f} s", source)
            assert rss_growth() < MAX_GROWTH_BYTES, source
    # The grammar must produce all three kinds, and mostly budget stops, or it proves little.
    assert min(outcomes.values()) >= FUZZ_CASES // 20, outcomes
    assert outcomes["stopped"] >= FUZZ_CASES // 4, outcomes
    print(f"fuzz outcomes {outcomes}, slowest {slowest:.2f} s")


# --- the measures are upper bounds ---------------------------------------------------------


def _random_value(rng: random.Random, depth: int, shared: list[Any]) -> Any:
    pick = rng.random()
    if depth <= 0 or pick < 0.3:
        return rng.choice(
            ["", "plain", "quote'\"\\", "new\nline\ttab", "\x00\x07ctl", "日本語", "🚀\u2028",
             "\U000e0001", 0, -17, 2**70, 1.5, -0.0, True, None]
        )  # fmt: skip
    if pick < 0.4 and shared:
        return rng.choice(shared)  # shared parts: a DAG, not a tree
    size = rng.randint(0, 4)
    if pick < 0.6:
        value: Any = [_random_value(rng, depth - 1, shared) for _ in range(size)]
    elif pick < 0.8:
        value = {f"k{i}": _random_value(rng, depth - 1, shared) for i in range(size)}
    else:
        value = tuple(_random_value(rng, depth - 1, shared) for _ in range(size))
    shared.append(value)
    return value


def test_text_size_bounds_str_repr_and_json() -> None:
    rng = random.Random(7)
    budget = RenderBudget(DEFAULT_LIMITS)
    for _ in range(500):
        value = _random_value(rng, 4, [])
        assert len(str(value)) <= budget.text_size(value)
        # Inside a container a string is quoted and escaped: the measure tojson applies.
        quoted = budget.text_size([value])
        assert len(repr(value)) <= quoted
        try:
            encoded = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):  # tuple keys: json refuses anyway
            continue
        assert len(encoded) <= quoted


def test_printf_size_bounds_python_formatting() -> None:
    rng = random.Random(11)
    budget = RenderBudget(DEFAULT_LIMITS)
    # (spec, how many arguments it takes); a * takes a width or precision first.
    specs = [("%s", 1), ("%r", 1), ("%a", 1), ("%d", 1), ("%5d", 1), ("%-8s", 1), ("%.3f", 1),
             ("%10.2e", 1), ("%x", 1), ("%c", 1), ("%%", 0), ("%*d", 2), ("%.*f", 2),
             ("%+05d", 1), ("%#o", 1), ("%g", 1), ("abc", 0), (" ", 0)]  # fmt: skip
    samples = [7, 3.25, "s\x00", 65, [1, 2], "🚀", "new\nline", 2**80, -1.5e300]
    checked = 0
    for _ in range(2000):
        chosen = [rng.choice(specs) for _ in range(rng.randint(1, 5))]
        fmt = "".join(spec for spec, _ in chosen)
        values: Any = tuple(rng.choice(samples) for _ in range(sum(n for _, n in chosen)))
        if rng.random() < 0.2:
            fmt, values = "%(k)s-%(k)r-%(k)10s", {"k": rng.choice(samples)}
        try:
            text = fmt % values
        except (TypeError, ValueError, KeyError, OverflowError):
            continue
        assert len(text) <= printf_size(budget, fmt, values), (fmt, values)
        checked += 1
    assert checked > 500
