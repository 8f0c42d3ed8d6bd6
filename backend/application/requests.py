"""The one request builder: from what a front end was asked to an engine request.

Every front end (the GUI, ``hearth run`` local and ``--url``, the OpenAI routes, the Ollama
routes, chats through a remote connection) describes a request the same way: a model name,
the conversation (messages or a raw prompt) and the ``RequestOptions`` it was *explicitly*
given. ``build_request`` resolves the rest in one documented order, lowest first:

1. Hearth's built-in defaults (``SamplingParams()``, no reply limit, no stop strings);
2. the user's saved settings (the parameter panel: sampling, reply length, overflow policy);
3. the model's preset, made from a Modelfile (its PARAMETERs, stop strings, TEMPLATE,
   SYSTEM and seeded MESSAGEs), when the model name is a preset, or the preset a front end
   says is active (the GUI's panel);
4. the explicit options of this request.

The system turn is the conversation's own, else the options' ``system_prompt``, else the
preset's. Structured output (a JSON schema, JSON mode, a required tool call) becomes a grammar
here; so do tools the model may call, as a lazy grammar in its family's call syntax (read from
the template it runs with) that constrains a call only once the model starts one. The result
is checked once against the engine's limits (``check_request``), so no front end can send what
the engine can't honour; images on the messages against the image settings (how many, how
big: ``images.check_images``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from backend.application.images import check_images
from backend.engine.grammars import JSON_OBJECT_GRAMMAR, grammar_for_json_schema
from backend.engine.prepare import check_request
from backend.engine.types import (
    ChatMessage,
    GenerationRequest,
    OverflowPolicy,
    SamplingParams,
    SpeculationMode,
    SpeculationParams,
    new_request_id,
)
from backend.errors import InvalidRequest
from backend.library.presets import Preset
from backend.settings import Settings
from backend.tools.calls import forced_call_schema
from backend.tools.formats import detect_tool_format
from backend.tools.grammar import tool_call_grammar

#: ``RequestOptions.seed``: a fresh random seed (Ollama's -1), overriding a saved fixed seed.
RANDOM_SEED = -1
#: ``RequestOptions.max_tokens``: no limit but the context (Ollama's -1), overriding one saved.
NO_LIMIT = -1

_SAMPLING = tuple(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class RequestOptions:
    """What this request explicitly asks for; ``None`` means "not given"."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None  # RANDOM_SEED: random even if a seed is saved
    max_tokens: int | None = None  # NO_LIMIT: up to the context's end
    stop: tuple[str, ...] | None = None
    overflow: OverflowPolicy | None = None
    system_prompt: str | None = None  # used when the conversation has no system turn
    chat_template: str | None = None  # Jinja replacing the model's and the preset's
    json_schema: dict[str, Any] | None = None  # the reply must be JSON matching this schema
    json_object: bool = False  # the reply must be a JSON object
    tools: tuple[dict[str, Any], ...] | None = None  # OpenAI tool definitions
    tool_choice: str | dict[str, Any] | None = None  # "none", "auto", "required", or one tool
    request_id: str | None = None  # chosen by the front end (to stop it before it starts)
    report_progress: bool = False  # PromptProgress events while the prompt is read
    # Speculative decoding (llama-server's speculative.* options): the mode, and the most and
    # fewest tokens drafted per step, and the draft model's confidence floor.
    speculative: SpeculationMode | None = None
    speculative_n_max: int | None = None
    speculative_n_min: int | None = None
    speculative_p_min: float | None = None

    def given(self) -> set[str]:
        """The names of the options set, for logs and tests."""
        return {f.name for f in fields(self) if getattr(self, f.name) not in (None, False)}


NO_OPTIONS = RequestOptions()

# llama-server's --spec-type names (and "none"), as the modes they amount to here.
_SPEC_TYPES: dict[str, SpeculationMode] = {
    "none": "off", "ngram-simple": "ngram", "ngram-map-k": "ngram", "ngram-map-k4v": "ngram",
    "ngram-mod": "ngram", "ngram-cache": "ngram", "draft-simple": "draft"}


def speculative_mode(name: str | None) -> SpeculationMode | None:
    """A request's speculation mode from its name: Hearth's (auto, off, ngram, draft) or
    llama-server's spec type (none, ngram-mod, draft-simple…); None when not given."""
    if name is None:
        return None
    key = name.strip().lower()
    if key in ("auto", "off", "ngram", "draft"):
        return key  # type: ignore[return-value]
    if key in _SPEC_TYPES:
        return _SPEC_TYPES[key]
    raise InvalidRequest(f"Unknown speculative decoding type {name!r}: use auto, off, ngram "
                         "or draft (or llama-server's none, ngram-mod, draft-simple…).")


def saved_sampling(settings: Settings) -> SamplingParams:
    """The sampling the user saved (step 2), over the built-in defaults."""
    saved = settings.sampling
    return replace(SamplingParams(), **{name: getattr(saved, name) for name in _SAMPLING
                                        if hasattr(saved, name)})


def build_request(*, messages: Sequence[ChatMessage] | None = None, prompt: str | None = None,
                  options: RequestOptions = NO_OPTIONS, settings: Settings,
                  preset: Preset | None = None, model_template: str | None = None
                  ) -> GenerationRequest:
    """The engine request for this conversation, in the order the module docstring gives.
    ``model_template``: the chat template of the model file, which tells how it writes tool
    calls when neither the options nor the preset replace it (only read with tools)."""
    if (messages is None) == (prompt is None):
        raise InvalidRequest("Send either messages or a prompt.")
    check_images(messages, settings.images)  # how many, how big: the same for every front end
    params = preset.parameters if preset is not None else {}

    sampling = saved_sampling(settings)
    sampling = replace(sampling, **{k: v for k, v in params.items() if k in _SAMPLING})
    sampling = replace(sampling, **{k: getattr(options, k) for k in _SAMPLING
                                    if getattr(options, k) is not None})
    if sampling.seed is not None and sampling.seed < 0:  # Ollama's -1, from a preset or here
        sampling = replace(sampling, seed=None)

    max_tokens = settings.sampling.max_tokens
    if "num_predict" in params:
        max_tokens = params["num_predict"] if params["num_predict"] > 0 else None
    if options.max_tokens is not None:
        max_tokens = None if options.max_tokens == NO_LIMIT else options.max_tokens

    stop: tuple[str, ...] = tuple(params.get("stop") or ())
    if options.stop is not None:
        stop = tuple(options.stop)

    template = options.chat_template or (preset.chat_template if preset else None)
    tools = options.tools if options.tools and options.tool_choice != "none" else None
    grammar, triggers = _grammar(options, tools, template or model_template)
    request = GenerationRequest(
        messages=None if messages is None else _conversation(messages, options, preset),
        prompt=prompt, sampling=sampling, max_tokens=max_tokens, stop=stop,
        grammar=grammar, grammar_triggers=triggers, tools=tools,
        overflow=options.overflow or settings.engine.overflow,
        chat_template=template if messages is not None else None,
        report_progress=options.report_progress,
        speculation=_speculation(options, settings),
        request_id=options.request_id or new_request_id())
    check_request(request)
    return request


def _speculation(options: RequestOptions, settings: Settings) -> SpeculationParams:
    """The saved mode unless this request says; its n_max/n_min/p_min over the defaults."""
    default = SpeculationParams()
    return SpeculationParams(
        mode=options.speculative or settings.engine.speculative,
        n_max=options.speculative_n_max,
        n_min=default.n_min if options.speculative_n_min is None else options.speculative_n_min,
        p_min=default.p_min if options.speculative_p_min is None else options.speculative_p_min)


def _conversation(messages: Sequence[ChatMessage], options: RequestOptions,
                  preset: Preset | None) -> tuple[ChatMessage, ...]:
    """The system turn (the conversation's own, else the options', else the preset's), then
    the preset's seeded turns, then the conversation."""
    given = tuple(messages)
    own = given[0] if given and given[0].role == "system" else None
    rest = given[1:] if own is not None else given
    system = own
    if system is None:
        text = options.system_prompt if options.system_prompt else (
            preset.system if preset is not None else None)
        system = ChatMessage("system", text) if text else None
    seeded = preset.messages if preset is not None else ()
    return (*((system,) if system else ()), *seeded, *rest)


def _grammar(options: RequestOptions, tools: tuple[dict[str, Any], ...] | None,
             template: str | None) -> tuple[str | None, tuple[str, ...]]:
    """The grammar structured output needs (a required tool call, a JSON schema, JSON mode)
    or, with tools the model may call, a lazy one that holds each call it starts to the tools'
    schemas, in the syntax its template shows (``backend/tools/grammar.py``); and the lazy
    grammar's triggers."""
    if tools:
        try:
            forced = forced_call_schema(list(tools), options.tool_choice)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.") from exc
        if forced is not None:
            if options.json_schema is not None or options.json_object:
                raise InvalidRequest("Send either a required tool_choice or a structured "
                                     "response format, not both.")
            return grammar_for_json_schema(forced), ()
    if options.json_schema is not None:
        return grammar_for_json_schema(options.json_schema), ()
    if options.json_object:
        return JSON_OBJECT_GRAMMAR, ()
    fmt = detect_tool_format(template) if tools else None
    if tools and fmt is not None:
        try:
            lazy = tool_call_grammar(tools, fmt)
        except (InvalidRequest, ValueError):  # a schema the converter can't take: calls are
            return None, ()  # then read unconstrained, as they were before
        return lazy.gbnf, lazy.triggers
    return None, ()
