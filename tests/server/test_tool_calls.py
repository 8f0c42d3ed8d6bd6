"""Tool calls: parsed from replies, forced by tool_choice, through the unmodified openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from backend.tools.calls import forced_call_schema, parse_tool_calls
from tests.server.conftest import HearthServer

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
# ChatML that lists the tools: what Qwen/Hermes-style templates do.
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these tools by answering with JSON "
    '{"name": ..., "arguments": ...}:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}'
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize(("text", "names", "rest"), [
    ('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>', ["f"], ""),
    ('Let me check.\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n'
     '<tool_call>{"name": "g", "arguments": {"y": "é"}}</tool_call>', ["f", "g"], "Let me check."),
    ('{"name": "f", "parameters": {"x": 1}}', ["f"], ""),
    ("The weather is fine.", [], "The weather is fine."),
    ('<tool_call>{not json}</tool_call>', [], "<tool_call>{not json}</tool_call>"),
    ('{"x": 1}', [], '{"x": 1}'),
])
def test_parse_tool_calls(text: str, names: list[str], rest: str) -> None:
    content, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == names
    assert content == rest
    for call in calls:
        assert isinstance(json.loads(call.arguments), dict) and call.id.startswith("call_")


def test_forced_schema_for_required_and_named_choices() -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    assert forced_call_schema([WEATHER], "auto") is None
    assert "oneOf" in forced_call_schema([WEATHER, other], "required")  # type: ignore[operator]
    named = forced_call_schema([WEATHER, other], {"type": "function",
                                                  "function": {"name": "get_weather"}})
    assert named is not None and named["properties"]["name"] == {"const": "get_weather"}
    with pytest.raises(ValueError):
        forced_call_schema([WEATHER], {"type": "function", "function": {"name": "nope"}})


@pytest.fixture(scope="module")
def tool_preset(hearth_server: HearthServer) -> str:
    name = "smollm2-tools"
    response = httpx.post(f"{hearth_server.url}/api/create", timeout=60, json={
        "model": name, "from": "smollm2:135m", "template": TOOLS_TEMPLATE, "stream": False})
    assert response.status_code == 200, response.text
    return name


def test_required_tool_choice_returns_tool_calls(hearth_server: HearthServer,
                                                 tool_preset: str) -> None:
    client = openai.OpenAI(base_url=f"{hearth_server.url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model=tool_preset, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER], tool_choice="required", max_tokens=60, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_streamed_tool_calls(hearth_server: HearthServer, tool_preset: str) -> None:
    client = openai.OpenAI(base_url=f"{hearth_server.url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=tool_preset, messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60, temperature=0, stream=True)
    calls, finish = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            calls += chunk.choices[0].delta.tool_calls
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls" and calls[0].function.name == "get_weather"
