"""Hostile chat templates run on a budget: they end in a TemplateError, quickly, in bounded memory.

Covers the two reported examples, a long list of amplifiers (each a different way to make one
Python operation or one loop cost far more than its source suggests), hostile sources for the
compiler, and concurrency (a hostile render never holds up a legit one). The seeded fuzzer and
the soundness of the budget's measures are in test_template_fuzz.py.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import tracemalloc

import pytest

from backend.engine.chat_template import CHATML_TEMPLATE, ChatTemplate
from backend.engine.template_budget import (
    DEFAULT_LIMITS,
    limits,
    limits_overridden,
)
from backend.engine.types import ChatMessage
from backend.errors import TemplateError
from tests.backend.hostile_templates import (
    MAX_GROWTH_BYTES,
    MESSAGES,
    budget_stop,
    mark_rss_baseline,
    rss_growth,
)

CHATML_OUT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\n"
)
DEADLINE_S = 0.5
# One operation may finish after the deadline passed (the largest allowed ones, a sort of
# 100,000 items or a 2 MB title-casing, take ~0.25 s here), and the machine is shared.
MARGIN_S = 1.0


@pytest.fixture(autouse=True, scope="module")
def _rss_baseline() -> None:
    mark_rss_baseline()


def _refused_in_time(source: str, deadline_s: float = DEADLINE_S) -> TemplateError:
    """Render ``source``; it must fail with a TemplateError in time and in bounded memory."""
    with limits_overridden(seconds=deadline_s):
        started = time.monotonic()
        with pytest.raises(TemplateError) as info:
            ChatTemplate(source).render(MESSAGES)
        elapsed = time.monotonic() - started
    assert elapsed < deadline_s + MARGIN_S, f"took {elapsed:.2f} s"
    assert rss_growth() < MAX_GROWTH_BYTES
    message = info.value.user_message
    assert "override" in message and "ChatML fallback" in message
    return info.value


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
    assert budget_stop(info.value)


def test_huge_string_repetition_is_refused_before_it_allocates() -> None:
    started = time.monotonic()
    error = _refused_in_time("{{ 'A' * 3000000000 }}")
    assert time.monotonic() - started < 0.5
    assert "3,000,000,000-character string" in error.user_message
    assert budget_stop(error)


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
    assert rss_growth() < MAX_GROWTH_BYTES


def test_a_long_legit_template_text_still_compiles() -> None:
    # Text is one token however long: a huge system prompt in a template is fine.
    source = "{{ bos_token }}" + "You are helpful. " * 50_000 + CHATML_TEMPLATE
    assert ChatTemplate(source).render(MESSAGES).endswith(CHATML_OUT)


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


# --- overhead ------------------------------------------------------------------------------


def test_budget_renders_a_real_template_as_jinja2_does(smollm2_template: str) -> None:
    """The budget changes nothing an ordinary template renders (what it costs is measured by
    bench/template_overhead.py, not here: speed belongs in benchmarks)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = smollm2_template
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
