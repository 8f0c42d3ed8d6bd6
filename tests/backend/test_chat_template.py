"""Tests for backend.engine.chat_template: rendering, template selection, sandboxing, BOS."""

from __future__ import annotations

import pathlib
from datetime import datetime

import pytest

from backend.engine.chat_template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    _compile,
    select_template,
    strip_leading_bos,
)
from backend.engine.types import ChatMessage
from backend.errors import TemplateError

SYSTEM_USER = (ChatMessage("system", "You are terse."), ChatMessage("user", "Hi"))
CHATML_SYSTEM_USER = (
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
)


@pytest.mark.parametrize(
    ("add_generation_prompt", "expected"),
    [
        (True, CHATML_SYSTEM_USER + "<|im_start|>assistant\n"),
        (False, CHATML_SYSTEM_USER),
    ],
)
def test_chatml_fallback_exact_output(add_generation_prompt: bool, expected: str) -> None:
    template = select_template(None, None, bos_token="<s>", eos_token="</s>")
    assert template.source == CHATML_TEMPLATE
    assert template.render(SYSTEM_USER, add_generation_prompt=add_generation_prompt) == expected


@pytest.mark.parametrize(
    ("gguf_template", "override", "expected"),
    [
        ("GGUF", "OVERRIDE", "OVERRIDE"),
        (None, "OVERRIDE", "OVERRIDE"),
        ("GGUF", None, "GGUF"),
        ("GGUF", "", "GGUF"),
        ("GGUF", "  \n", "GGUF"),
        (None, None, CHATML_TEMPLATE),
        ("", "", CHATML_TEMPLATE),
    ],
)
def test_select_template_precedence(
    gguf_template: str | None, override: str | None, expected: str
) -> None:
    template = select_template(gguf_template, override, bos_token="<s>", eos_token="</s>")
    assert template == ChatTemplate(expected, bos_token="<s>", eos_token="</s>")


def test_override_wins_when_rendering() -> None:
    template = select_template(
        "GGUF:{{ messages[0].content }}",
        "OVERRIDE:{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert template.render([ChatMessage("user", "x")]) == "OVERRIDE:<s>x</s>"


def test_real_gguf_template_renders(smollm2_template: str) -> None:
    template = select_template(smollm2_template, None, bos_token="", eos_token="<|im_end|>")
    prompt = template.render(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "What is the capital of Peru?")]
    )
    assert "What is the capital of Peru?" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    no_prompt = template.render([ChatMessage("user", "Hello")], add_generation_prompt=False)
    assert not no_prompt.endswith("<|im_start|>assistant\n")


def test_raise_exception_becomes_template_error_with_template_text() -> None:
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('Conversation must start with a user message') }}"
        "{% endif %}ok"
    )
    assert template.render([ChatMessage("user", "hi")]) == "ok"
    with pytest.raises(TemplateError, match="Conversation must start with a user message"):
        template.render([ChatMessage("assistant", "hi")])


# Each payload would create PATH if the sandbox let it through.
ESCAPE_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch PATH').read() }}",
    "{{ lipsum.__globals__['os'].system('touch PATH') }}",
    "{{ namespace.__init__.__globals__.os.system('touch PATH') }}",
    "{{ joiner.__init__.__globals__.__builtins__.open('PATH', 'w').write('x') }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch PATH') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ messages.append({'role': 'user', 'content': 'injected'}) }}",
    "{% set _ = messages[0].update({'role': 'system'}) %}x",
]


@pytest.mark.parametrize("payload", ESCAPE_PAYLOADS)
def test_sandbox_escape_is_blocked(payload: str, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "pwned"
    template = ChatTemplate(payload.replace("PATH", str(target)))
    with pytest.raises(TemplateError) as info:
        template.render([ChatMessage("user", "hi")])
    assert "sandbox forbids" in info.value.user_message
    assert "override" in info.value.user_message
    assert not target.exists()


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("{% for m in messages %}{{ m.content }}", "syntax error"),
        ("{{ messages[0].content( }}", "syntax error"),
        ("{% if %}x{% endif %}", "syntax error"),
        ("{{ messages[0].content + 1 }}", "failed while rendering"),
        ("{{ undefined_thing.attr }}", "failed while rendering"),
        ("{{ range(10 ** 9) | list }}", "failed while rendering"),
    ],
)
def test_broken_templates_raise_template_error(source: str, phrase: str) -> None:
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source).render([ChatMessage("user", "hi")])
    assert phrase in info.value.user_message
    assert "ChatML fallback" in info.value.user_message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ messages[0].content | tojson }}", '"héllo 日本語 🚀"'),
        ("{{ messages | tojson }}", '[{"role": "user", "content": "héllo 日本語 🚀"}]'),
        (
            "{{ messages[0] | tojson(indent=2) }}",
            '{\n  "role": "user",\n  "content": "héllo 日本語 🚀"\n}',
        ),
    ],
)
def test_tojson_keeps_non_ascii(source: str, expected: str) -> None:
    assert ChatTemplate(source).render([ChatMessage("user", "héllo 日本語 🚀")]) == expected


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (None, "no tools"),
        ([{"name": "wéather"}], 'tools=[{"name": "wéather"}]'),
    ],
)
def test_tools_defined_only_when_given(tools: list[dict] | None, expected: str) -> None:
    template = ChatTemplate(
        "{% if tools is defined %}tools={{ tools | tojson }}{% else %}no tools{% endif %}"
    )
    assert template.render([], tools=tools) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ strftime_now('%Y') }}", str(datetime.now().year)),
        (
            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
            "{{ m.content }}{% endfor %}",
            "a",
        ),
        ("{% generation %}{{ messages[1].content }}{% endgeneration %}", "b"),
        ("  {% if true %}\n{{ messages[0].content }}\n  {% endif %}\n", "a\n"),
    ],
)
def test_hf_compatible_environment(source: str, expected: str) -> None:
    messages = [ChatMessage("user", "a"), ChatMessage("assistant", "b")]
    assert ChatTemplate(source).render(messages) == expected


def test_compiled_template_is_cached() -> None:
    assert _compile(CHATML_TEMPLATE) is _compile(CHATML_TEMPLATE)


@pytest.mark.parametrize(
    ("text", "bos", "expected"),
    [
        ("<s>hi", "<s>", ("hi", True)),
        ("hi", "<s>", ("hi", False)),
        ("<s><s>hi", "<s>", ("<s>hi", True)),
        (" <s>hi", "<s>", (" <s>hi", False)),
        ("<s>hi", "", ("<s>hi", False)),
        ("", "<s>", ("", False)),
        (
            "<|begin_of_text|><|start_header_id|>",
            "<|begin_of_text|>",
            ("<|start_header_id|>", True),
        ),
    ],
)
def test_strip_leading_bos(text: str, bos: str, expected: tuple[str, bool]) -> None:
    assert strip_leading_bos(text, bos) == expected
