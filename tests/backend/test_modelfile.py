"""The Modelfile parser (pure), and the preset rules built on it that need no model loaded."""

from __future__ import annotations

from typing import Any

import pytest

from backend.engine.types import ChatMessage, GenerationRequest, SamplingParams
from backend.errors import InvalidRequest, ModelNotFound, TemplateError
from backend.library.local import resolve_model
from backend.library.modelfile import ModelfileError, parse_modelfile, render_modelfile
from backend.library.preset_builder import build_preset
from backend.library.presets import (
    apply_preset,
    delete_preset,
    find_preset,
    list_presets,
    save_preset,
    template_is_jinja,
)

OK_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("bare FROM", "FROM smollm2:135m", {"from_": "smollm2:135m"}),
    ("instructions are case-insensitive, tabs separate",
     "from\tsmollm2:135m\nSystem   hello there", {"system": "hello there"}),
    ("comments and blank lines",
     "# a comment\n\n   # indented comment\nFROM x\n\nSYSTEM hi\n", {"system": "hi"}),
    ("double-quoted value with escapes",
     'FROM x\nSYSTEM "Say \\"hi\\" C:\\\\dir \\n stays"',
     {"system": 'Say "hi" C:\\dir \\n stays'}),
    ("triple quotes on one line", 'FROM x\nSYSTEM """one "quoted" line"""',
     {"system": 'one "quoted" line'}),
    ("triple-quoted block: newlines next to the quotes are formatting",
     'FROM x\nSYSTEM """\nline 1\n\n  line 3\n"""', {"system": "line 1\n\n  line 3"}),
    ("triple-quoted block starting on the instruction line",
     'FROM x\nTEMPLATE """{% for m in messages %}\n{{ m.content }}{% endfor %}"""',
     {"template": "{% for m in messages %}\n{{ m.content }}{% endfor %}"}),
    ("a # inside a block is text, not a comment",
     'FROM x\nSYSTEM """\n# not a comment\n"""', {"system": "# not a comment"}),
    ("repeated stop parameters accumulate; other types are converted",
     'FROM x\nPARAMETER stop "<|im_end|>"\nPARAMETER stop User:\nPARAMETER temperature 0.2\n'
     "PARAMETER num_ctx 4096\nPARAMETER Seed -1",
     {"parameters": {"stop": ["<|im_end|>", "User:"], "temperature": 0.2, "num_ctx": 4096,
                     "seed": -1}}),
    ("the last SYSTEM wins", "FROM x\nSYSTEM a\nSYSTEM b", {"system": "b"}),
    ("MESSAGE lines become seeded history, multi-line too",
     'FROM x\nMESSAGE user Hi\nMESSAGE assistant """Hello,\nfriend."""',
     {"messages": (("user", "Hi"), ("assistant", "Hello,\nfriend."))}),
    ("LICENSE is kept", 'FROM x\nLICENSE """MIT\nterms"""', {"license": "MIT\nterms"}),
    ("ADAPTER and unsupported parameters are warnings",
     "FROM x\nADAPTER ./lora.gguf\nPARAMETER mirostat 2",
     {"warnings": ("line 2: ADAPTER was ignored: LoRA adapters are not supported.",
                   "line 3: PARAMETER mirostat is not supported by Hearth and was ignored.")}),
    ("Windows line endings", "FROM x\r\nSYSTEM hi\r\n", {"system": "hi"}),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in OK_CASES],
                         ids=[name for name, _, _ in OK_CASES])
def test_parses(text: str, expected: dict[str, Any]) -> None:
    parsed = parse_modelfile(text)
    for field, value in expected.items():
        assert getattr(parsed, field) == value, field


BAD_CASES: list[tuple[str, str, int, str]] = [
    ("no FROM", "SYSTEM hi", 0, "no FROM line"),
    ("unknown instruction", "FROM x\nSYSTM hi", 2, "unknown instruction 'SYSTM'"),
    ("unknown parameter", "FROM x\n\nPARAMETER tempreature 1", 3, "unknown parameter"),
    ("wrong value type", "FROM x\nPARAMETER num_ctx big", 2, "needs an integer"),
    ("negative temperature", "FROM x\nPARAMETER temperature -1", 2, "can't be negative"),
    ("parameter without a value", "FROM x\nPARAMETER temperature", 2, "a name and a value"),
    ("unclosed double quote", 'FROM x\nSYSTEM "hi', 2, "not closed on the same line"),
    ("unclosed triple quote", 'FROM x\nSYSTEM """\nhi\n', 2, "never closed"),
    ("text after the closing quotes", 'FROM x\nSYSTEM """hi""" extra', 2, "after the closing"),
    ("text after a block's closing quotes", 'FROM x\nSYSTEM """\nhi\n""" extra', 4,
     "after the closing"),
    ("bad MESSAGE role", "FROM x\nMESSAGE robot hi", 2, "role 'robot'"),
    ("two FROM lines", "FROM x\nFROM y", 2, "first is on line 1"),
    ("empty SYSTEM", "FROM x\nSYSTEM", 2, "needs a value"),
]


@pytest.mark.parametrize(("text", "line", "message"), [(t, n, m) for _, t, n, m in BAD_CASES],
                         ids=[name for name, _, _, _ in BAD_CASES])
def test_mistakes_name_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse_modelfile(text)
    assert caught.value.line == line
    assert message in caught.value.user_message
    if line:
        assert caught.value.user_message.startswith(f"Modelfile line {line}: ")
    assert isinstance(caught.value, InvalidRequest)  # an API answers it with 400


@pytest.mark.parametrize("value", ["plain", 'with "quotes"', "two\nlines", "\nleading newline",
                                   'ends with a quote"', "trailing newline\n", "back\\slash",
                                   "  indented\n\tand tabbed  "])
def test_render_then_parse_gives_back_every_value(value: str) -> None:
    text = render_modelfile("base", system=value, template=value, license=value,
                            parameters={"stop": [value, "x"], "temperature": 0.5},
                            messages=(("user", value),))
    parsed = parse_modelfile(text)
    assert (parsed.system, parsed.template, parsed.license) == (value, value, value)
    assert parsed.parameters == {"stop": [value, "x"], "temperature": 0.5}
    assert parsed.messages == (("user", value),)


@pytest.mark.parametrize(("template", "jinja"), [
    ("{% for m in messages %}{{ m['content'] }}{% endfor %}", True),
    ("{{ bos_token }}{{ messages[0].content }}", True),
    ("{{ .System }} {{ .Prompt }}", False),
    ("{{- range .Messages }}{{ .Content }}{{ end }}", False),
    ("{{ if .System }}<|system|>{{ .System }}{{ end }}", False),
    ("no placeholders at all", False),
])
def test_template_kind(template: str, jinja: bool) -> None:
    assert template_is_jinja(template) is jinja


def test_a_preset_resolves_to_its_base_and_fills_in_defaults() -> None:
    spec = parse_modelfile('FROM smollm2:135m\nSYSTEM "Be brief."\nPARAMETER temperature 0.1\n'
                           "PARAMETER top_k 7\nPARAMETER num_predict 9\nPARAMETER stop END\n"
                           "MESSAGE user Hi\nMESSAGE assistant Hello")
    preset, warnings = build_preset("Brief:latest", spec)
    save_preset(preset)
    assert warnings == []
    assert find_preset("brief") == find_preset("BRIEF:latest") == preset
    assert resolve_model("brief").id == "smollm2:135m"
    assert [p.name for p in list_presets()] == ["brief"]

    asked = GenerationRequest(messages=(ChatMessage("user", "Q"),),
                              sampling=SamplingParams(temperature=0.9, top_k=40))
    out = apply_preset("brief", asked, explicit={"temperature"})
    assert out.sampling.temperature == 0.9  # the client's value wins
    assert out.sampling.top_k == 7  # the preset's beats the saved default
    assert (out.max_tokens, out.stop) == (9, ("END",))
    assert [(m.role, m.content) for m in out.messages or ()] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Q")]

    own_system = GenerationRequest(messages=(ChatMessage("system", "Mine"),
                                             ChatMessage("user", "Q")), max_tokens=3)
    out = apply_preset("brief", own_system, explicit={"max_tokens"})
    assert [m.content for m in out.messages or ()] == ["Mine", "Hi", "Hello", "Q"]
    assert out.max_tokens == 3
    assert apply_preset("smollm2:135m", asked) is asked  # not a preset: untouched

    child, _ = build_preset("brief-child", parse_modelfile("FROM brief\nPARAMETER top_k 3"))
    assert child.base == "smollm2:135m"  # flattened: a preset's base is always a model
    assert child.system == "Be brief." and child.parameters["top_k"] == 3
    assert delete_preset("brief") and not delete_preset("brief")
    with pytest.raises(ModelNotFound):
        resolve_model("brief")


@pytest.mark.parametrize(("name", "modelfile", "error"), [
    ("smollm2:135m", "FROM smollm2:135m", InvalidRequest),  # would shadow a model
    ("has/slash", "FROM smollm2:135m", InvalidRequest),
    ("loop", "FROM loop", InvalidRequest),
    ("orphan", "FROM no-such-model", ModelNotFound),
    ("broken", 'FROM smollm2:135m\nTEMPLATE "{% for m in messages %}"', TemplateError),
])
def test_bad_presets_are_refused(name: str, modelfile: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        build_preset(name, parse_modelfile(modelfile))


def test_a_go_template_is_kept_but_not_used() -> None:
    preset, warnings = build_preset("go", parse_modelfile(
        'FROM smollm2:135m\nTEMPLATE "{{ .System }} {{ .Prompt }}"'))
    assert preset.template == "{{ .System }} {{ .Prompt }}"
    assert preset.chat_template is None
    assert any("Go" in w for w in warnings)
