"""Tool-call syntax read from real chat templates; calls parse back in every family's shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.engine.chat_template import ChatTemplate
from backend.engine.types import ChatMessage
from backend.tools.calls import parse_tool_calls
from backend.tools.formats import HERMES, LLAMA3, MISTRAL, PHI4, detect_tool_format
from backend.tools.grammar import tool_call_grammar

TEMPLATES = Path(__file__).parent / "templates"
NOTE = {"type": "function", "function": {
    "name": "add_note", "description": "Save a note.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"]}}}
# The end-of-turn texts templates write after a reply; a model's special tokens, which the
# engine never prints.
_END = re.compile(r"(<\|eot_id\|>|<\|eom_id\|>|<\|im_end\|>|</s>|<\|end\|>|<end_of_turn>)\s*$")


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(("file", "expected"), [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", HERMES),
    ("Qwen-Qwen3-0.6B.jinja", HERMES),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", HERMES),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", LLAMA3),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", LLAMA3),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", LLAMA3),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", MISTRAL),
    # No tools list: these families can't be offered tools (the capability check refuses).
    ("google-gemma-2-2b-it.jinja", None),
    ("microsoft-Phi-3.5-mini-instruct.jinja", None),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", None),
])
def test_format_is_read_from_the_template(file: str, expected: object) -> None:
    assert detect_tool_format(_template(file)) == expected


def test_phi4_and_plain_json_templates() -> None:
    phi4 = ("{% for m in messages %}{% if m['role'] == 'system' and 'tools' in m %}<|system|>"
            "{{ m['content'] }}<|tool|>{{ m['tools'] }}<|/tool|><|end|>{% endif %}{% endfor %}")
    assert detect_tool_format(phi4) == PHI4
    assert detect_tool_format("{{ tools | tojson }} Answer with JSON.").name == "json"
    assert detect_tool_format(None) is None


@pytest.mark.parametrize("file", [
    "Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja", "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
])
def test_a_call_rendered_by_the_template_parses_back(file: str) -> None:
    """The template writes an earlier call in the shape the model was trained on: whatever
    the model writes in that shape must parse back into the same call."""
    fmt = detect_tool_format(_template(file))
    assert fmt is not None
    template = ChatTemplate(_template(file), bos_token="<s>", eos_token="</s>")
    call = {"id": fmt.new_call_id(), "type": "function",
            "function": {"name": "add_note", "arguments": {"text": "buy milk"}}}
    question = [ChatMessage("user", "Remember to buy milk.")]
    asked = template.render(question, add_generation_prompt=True, tools=[NOTE])
    answered = template.render([*question, ChatMessage("assistant", "", tool_calls=(call,))],
                               add_generation_prompt=False, tools=[NOTE])
    shared = len(asked)
    while not answered.startswith(asked[:shared]):
        shared -= 1
    reply = _END.sub("", answered[shared:]).strip()
    reply = reply.removeprefix("<|start_header_id|>assistant<|end_header_id|>").strip()
    _, calls = parse_tool_calls(reply, fmt)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add_note", {"text": "buy milk"})], reply


@pytest.mark.parametrize(("text", "expected", "rest"), [
    ('[TOOL_CALLS][{"name": "add_note", "arguments": {"text": "a"}}]', ["add_note"], ""),
    ('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]', ["a", "b"], ""),
    ('Sure.<|tool_call|>[{"name": "f", "arguments": {}}]<|/tool_call|>', ["f"], "Sure."),
    ('functools[{"name": "f", "arguments": {"q": "x"}}]', ["f"], ""),
    ('{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 1}"}}', ["f"], ""),
    ('{"name": "f", "parameters": {"x": 1}}', ["f"], ""),
    ('[1, 2, 3]', [], "[1, 2, 3]"),
    ('{"name": "f", "arguments": [1]}', [], '{"name": "f", "arguments": [1]}'),
    ("Python's functools module is handy.", [], "Python's functools module is handy."),
])
def test_every_shape_parses(text: str, expected: list[str], rest: str) -> None:
    content, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == expected
    assert content == rest


def test_mistral_ids_are_nine_letters_or_digits() -> None:
    _, calls = parse_tool_calls('[TOOL_CALLS][{"name": "f", "arguments": {}}]', MISTRAL)
    assert re.fullmatch(r"[A-Za-z0-9]{9}", calls[0].id)


@pytest.mark.parametrize("fmt", [HERMES, MISTRAL, PHI4, LLAMA3])
def test_triggers_match_only_what_the_grammar_reads_next(fmt: object) -> None:
    """llama.cpp feeds the grammar the text from the trigger on; a trigger that matched text
    the grammar refuses would abort the engine. So the triggers are $-anchored and match the
    opener (or a call's start) followed only by a prefix of what the grammar accepts."""
    lazy = tool_call_grammar([NOTE], fmt)  # type: ignore[arg-type]
    trigger = "|".join(f"(?:{t})" for t in lazy.triggers)
    opener = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]", "phi4": "<|tool_call|>",
              "llama3": ""}[fmt.name]  # type: ignore[attr-defined]
    head = "[" if fmt.listed else ""  # type: ignore[attr-defined]
    starts = (f"{opener}{head}{{", f'{opener}{head}{{"name": "', f'{opener}{head}{{ "name"')
    for text in (*((opener, f"{opener}\n") if opener else ()), *starts):
        assert re.search(trigger, f"Sure. {text}" if opener else text), text
    for text in (f"{opener}{head}{{x", f'{opener}{head}{{"nam" and more', f"{opener} hello"):
        assert not re.search(trigger, text), text
    assert lazy.gbnf.startswith("root ::= ")
    assert "hearth-tool-call ::= " in lazy.gbnf and "\nroot ::= " not in lazy.gbnf


def test_an_opener_s_head_triggers_only_where_a_call_starts() -> None:
    """A small model may write ``<tool_`` and wander off, so the head alone triggers the
    grammar — at the reply's or a line's start; prose that mentions it mid-sentence stays
    prose. The whole opener triggers anywhere."""
    triggers = tool_call_grammar([NOTE], HERMES).triggers

    def fires(text: str) -> bool:
        return any(re.search(t, text) for t in triggers)

    assert fires("<tool_") and fires("Sure.\n<tool_") and fires("Sure.\n  <tool_ca")
    assert fires("Sure. <tool_call>") and fires('Sure. <tool_call>{"name": "')
    assert not fires("Wrap it in a <tool_") and not fires("the `<tool_ca")
