"""The one request builder: defaults < saved settings < the model's preset < explicit options."""

from __future__ import annotations

import pytest

from backend.application.requests import (
    NO_LIMIT,
    RANDOM_SEED,
    RequestOptions,
    build_request,
)
from backend.engine.types import ChatMessage, OverflowPolicy, SamplingParams
from backend.errors import InvalidRequest
from backend.library.presets import Preset
from backend.settings import Settings

HI = (ChatMessage("user", "Hi"),)
SAVED = Settings.model_validate({"sampling": {"temperature": 0.5, "top_k": 20, "seed": 7,
                                              "max_tokens": 300},
                                 "engine": {"overflow": "rolling_window"}})
PRESET = Preset(name="brief", base="smollm2:135m", system="Be brief.",
                chat_template="{% for m in messages %}{{ m.content }}{% endfor %}",
                parameters={"temperature": 0.2, "num_predict": 64, "stop": ["END"],
                            "top_p": 0.5},
                messages=(ChatMessage("user", "Seeded?"), ChatMessage("assistant", "Yes.")))


def test_built_in_defaults_when_nothing_else_says() -> None:
    request = build_request(messages=HI, settings=Settings())
    assert request.sampling == SamplingParams()
    assert (request.max_tokens, request.stop, request.overflow, request.chat_template) == (
        None, (), OverflowPolicy.TRUNCATE_MIDDLE, None)
    assert request.messages == HI


def test_saved_settings_over_defaults() -> None:
    request = build_request(messages=HI, settings=SAVED)
    assert (request.sampling.temperature, request.sampling.top_k, request.sampling.seed) == (
        0.5, 20, 7)
    assert request.max_tokens == 300 and request.overflow == OverflowPolicy.ROLLING_WINDOW


def test_preset_over_saved_settings() -> None:
    request = build_request(messages=HI, settings=SAVED, preset=PRESET)
    s = request.sampling
    assert (s.temperature, s.top_p, s.top_k, s.seed) == (0.2, 0.5, 20, 7)
    assert (request.max_tokens, request.stop) == (64, ("END",))
    assert request.chat_template == PRESET.chat_template
    assert [m.content for m in request.messages or ()] == ["Be brief.", "Seeded?", "Yes.", "Hi"]


def test_explicit_options_over_everything() -> None:
    options = RequestOptions(temperature=1.1, max_tokens=NO_LIMIT, seed=RANDOM_SEED,
                             stop=("STOP",), overflow=OverflowPolicy.STOP,
                             system_prompt="Be long.", chat_template="{{ 'x' }}")
    request = build_request(messages=HI, settings=SAVED, preset=PRESET, options=options)
    assert (request.sampling.temperature, request.sampling.seed) == (1.1, None)
    assert (request.max_tokens, request.stop, request.overflow) == (None, ("STOP",),
                                                                     OverflowPolicy.STOP)
    assert request.chat_template == "{{ 'x' }}"
    assert request.messages is not None and request.messages[0] == ChatMessage("system",
                                                                               "Be long.")


def test_the_conversations_own_system_turn_wins() -> None:
    own = (ChatMessage("system", "Mine."), *HI)
    request = build_request(messages=own, settings=SAVED, preset=PRESET,
                            options=RequestOptions(system_prompt="Options'."))
    assert [m.content for m in request.messages or ()] == ["Mine.", "Seeded?", "Yes.", "Hi"]


@pytest.mark.parametrize(("options", "words"), [
    (RequestOptions(temperature=float("nan")), "temperature"),
    (RequestOptions(top_k=2**40), "top_k"),
    (RequestOptions(max_tokens=0), "at least 1"),
    (RequestOptions(stop=tuple("x" * 65)), "stop strings"),
    (RequestOptions(json_schema={"type": "string", "minLength": 10**9}), "too large"),
    (RequestOptions(tools=({"type": "function", "function": {"name": "f"}},),
                    tool_choice={"type": "function", "function": {"name": "g"}}), "'g'"),
])
def test_values_the_engine_cant_honour_are_refused_once_here(options: RequestOptions,
                                                               words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        build_request(messages=HI, settings=Settings(), options=options)


def test_structured_output_becomes_a_grammar() -> None:
    assert build_request(messages=HI, settings=Settings(),
                         options=RequestOptions(json_object=True)).grammar
    schema = build_request(messages=HI, settings=Settings(), options=RequestOptions(
        json_schema={"type": "object", "properties": {"a": {"type": "integer"}}}))
    assert schema.grammar and "root" in schema.grammar
    tools = ({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},)
    forced = build_request(messages=HI, settings=Settings(), options=RequestOptions(
        tools=tools, tool_choice="required"))
    assert forced.grammar and forced.tools == tools
    assert build_request(messages=HI, settings=Settings(), options=RequestOptions(
        tools=tools, tool_choice="none")).tools is None
    with pytest.raises(InvalidRequest, match="not both"):
        build_request(messages=HI, settings=Settings(), options=RequestOptions(
            tools=tools, tool_choice="required", json_object=True))


def test_a_raw_prompt_takes_no_template_or_system_turn() -> None:
    request = build_request(prompt="1, 2,", settings=SAVED, preset=PRESET)
    assert (request.prompt, request.messages, request.chat_template) == ("1, 2,", None, None)
    assert request.max_tokens == 64
    with pytest.raises(InvalidRequest):
        build_request(settings=SAVED)
