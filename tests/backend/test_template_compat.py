"""Real-world chat templates render exactly as the unbudgeted sandbox rendered them
(backend.engine.chat_template's budget, checked against a reference environment)."""

from __future__ import annotations

import pathlib

import pytest

from backend.engine.chat_template import CHATML_TEMPLATE, ChatTemplate
from backend.engine.types import ChatMessage
from backend.errors import TemplateError

# --- Real-world templates render exactly as the unbudgeted sandbox rendered them -------------
#
# The reference is the environment this module used before renders ran on a budget: Jinja's
# immutable sandbox with transformers' settings. Every template below is rendered by both on
# the same conversations; output (or the fact of failing) must be identical.


def _reference_render(source: str, context: dict) -> tuple[str, str]:
    import json

    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from backend.engine.chat_template import (
        _GenerationTagExtension,
        _raise_exception,
        _strftime_now,
    )

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTagExtension],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return "ok", env.from_string(source).render(**context)
    except TemplateError as exc:
        return "rejected", exc.user_message
    except Exception:
        return "failed", ""


def _budgeted_render(template: ChatTemplate, messages, tools) -> tuple[str, str]:
    try:
        return "ok", template.render(messages, tools=tools)
    except TemplateError as exc:
        if "rejected these messages" in exc.user_message:
            return "rejected", exc.user_message
        return "failed", ""


# The templates, as their models ship them (tests/backend/templates/): Llama 3.2 (meta-llama/
# Llama-3.2-3B-Instruct: tools, tojson(indent=4)); Qwen 2.5 with tools, as used for training
# with {% generation %} masks; Qwen 3 (reasoning, messages[::-1], string methods, a non-constant
# comparison); Gemma 3 (google/gemma-3-4b-it: alternation check with %, a system prefix);
# DeepSeek R1 distill (namespace flags, '</think>' in content, split); Mistral Small 3.1 (list
# concatenation in a loop, selectattr, tool-call ids, loop.index0 % 2); Phi-3.5-mini-instruct.
# And one that is no model's: "kitchen-sink", every construct the budget rewrites or wraps, used
# the legitimate way, so that a change in any of them shows up as a difference from the
# reference.
TEMPLATES = pathlib.Path(__file__).parent / "templates"
REAL_WORLD = {
    **{name: (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
       for name in ("llama-3.2", "qwen-2.5", "qwen-3", "gemma-3", "deepseek-r1",
                    "mistral-small-3.1", "phi-3.5")},
    "chatml": CHATML_TEMPLATE,
    "kitchen-sink": (TEMPLATES / "kitchen-sink.jinja").read_text(encoding="utf-8"),
}
KITCHEN_SINK = REAL_WORLD["kitchen-sink"]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city — «today».",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
_CALL = {
    "id": "call_0123456789",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
}


def _conversations() -> dict[str, tuple[list[ChatMessage], list[dict] | None]]:
    chat = [ChatMessage("system", "Be brief.")]
    for i in range(24):
        chat.append(ChatMessage("user", f"Question {i}: what about «{i}» and\nnewlines\t?"))
        chat.append(ChatMessage("assistant", f"<think>\nhmm {i}\n</think>\n\nAnswer {i} 日本語 🚀"))
    chat.append(ChatMessage("user", "Last one."))
    tool_chat = [
        ChatMessage("system", "You can call tools."),
        ChatMessage("user", "Weather in Lima?"),
        ChatMessage("assistant", "", tool_calls=(_CALL,)),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="call_0123456789", name="get_weather"),
        ChatMessage("assistant", "It is 21 °C."),
        ChatMessage("user", "Thanks!"),
    ]
    return {
        "chat": (chat, None),
        "chat+tools": (chat, TOOLS),
        "tool-calls": (tool_chat, TOOLS),
        "no-system": (chat[1:4], None),
        "wrong-order": ([ChatMessage("assistant", "first"), ChatMessage("user", "x")], None),
        "empty": ([], None),
    }


@pytest.mark.parametrize("conversation", list(_conversations()))
@pytest.mark.parametrize("name", list(REAL_WORLD))
def test_real_world_templates_render_as_before(name: str, conversation: str) -> None:
    messages, tools = _conversations()[conversation]
    source = REAL_WORLD[name]
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    context: dict = {
        "messages": [m.as_template_dict() for m in messages],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "add_generation_prompt": True,
    }
    if tools is not None:
        context["tools"] = tools
    assert _budgeted_render(template, messages, tools) == _reference_render(source, context)


def test_kitchen_sink_template_renders_something() -> None:
    # Guards the differential test above against comparing two identical failures.
    messages, tools = _conversations()["chat+tools"]
    text = ChatTemplate(KITCHEN_SINK).render(messages, tools=tools)
    assert "<SYSTEM#1>Be brief." in text
    assert "get_weather" in text


def test_smollm2_template_renders_as_before(smollm2_template: str) -> None:
    messages, _ = _conversations()["chat"]
    context = {
        "messages": [m.as_template_dict() for m in messages],
        "bos_token": "",
        "eos_token": "<|im_end|>",
        "add_generation_prompt": True,
    }
    template = ChatTemplate(smollm2_template, eos_token="<|im_end|>")
    assert _budgeted_render(template, messages, None) == _reference_render(
        smollm2_template, context
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ ('<a>'|e) + '<b>' + 'c' }}",  # Markup + str escapes the str
        "{{ '<x>' + ('<a>'|safe) }}",  # str + Markup too (Markup.__radd__)
        "{% autoescape true %}{{ 'a<' ~ '<b>' }}{{ '<' + 'x' }}{% endautoescape %}",
        "{{ ['<a>'|e, 'b']|join('<') }} {{ '{}<{}'.format('<a>'|e, '>') }}",
        "{{ 'a' + 'b' + 'c' + 'd' + 'e' + 'f' + 'g' + 'h' + 'i' + 'j' }}",  # the long, exact path
        "{{ 'abc'[::-1] ~ none[1:] }}{{ 7[::-1] }}",  # constant slices fold as before
    ],
)
def test_markup_and_constant_folding_as_before(source: str) -> None:
    context = {"messages": [], "bos_token": "", "eos_token": "", "add_generation_prompt": True}
    assert _budgeted_render(ChatTemplate(source), [], None) == _reference_render(source, context)
