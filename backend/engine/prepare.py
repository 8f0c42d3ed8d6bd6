"""From a request to its prompt tokens, on a preparation thread, never the engine thread.

Rendering a chat template (untrusted code from a GGUF file, a Modelfile or a client, run in a
budgeted sandbox) and tokenizing a long conversation take from a millisecond to the template's
deadline. On the engine thread every running stream would wait for that; here it runs beside
them, and a request whose preparation fails fails alone. The tokens are tied to the
``LoadedState`` they were made with, so the scheduler can tell when another model was loaded
in between (``StalePrompt``) rather than feed one model's tokens to another.

Threading: any thread. The model is read only for tokenizing, under the state's lock (see
``state.py``); the template and the loaded model's facts are immutable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from backend.engine.chat_template import select_template, strip_leading_bos
from backend.engine.image_prompt import has_images, prepare_image_prompt
from backend.engine.overflow import fit_messages, fit_tokens, prompt_budget
from backend.engine.prepared import PreparedPrompt
from backend.engine.state import LoadedState
from backend.engine.types import ChatMessage, GenerationRequest
from backend.errors import InvalidRequest, ModelNotLoaded

# llama.cpp takes these as C ints; larger values would not mean anything anyway.
MAX_C_INT = 2**31 - 1
MAX_STOP_STRINGS = 64
MAX_STOP_CHARS = 1_000
MAX_DRAFT = 256  # drafted tokens per step, at most (a request's speculative.n_max)


def check_request(request: GenerationRequest) -> None:
    """Refuse values the engine can't honour, whichever front end sent them."""
    p = request.sampling
    for name, value, low, high in (
            ("temperature", p.temperature, 0.0, 100.0), ("top_p", p.top_p, 0.0, 1.0),
            ("min_p", p.min_p, 0.0, 1.0), ("repeat_penalty", p.repeat_penalty, 0.0, 100.0),
            ("presence_penalty", p.presence_penalty, -100.0, 100.0),
            ("frequency_penalty", p.frequency_penalty, -100.0, 100.0)):
        if not isinstance(value, int | float) or not math.isfinite(value) \
                or not low <= value <= high:
            raise InvalidRequest(f"'{name}' must be a number from {low:g} to {high:g}, not "
                                 f"{value!r}.")
    for name, value, low in (("top_k", p.top_k, 0), ("repeat_last_n", p.repeat_last_n, -1)):
        if not isinstance(value, int) or not low <= value <= MAX_C_INT:
            raise InvalidRequest(f"'{name}' must be a whole number from {low} to {MAX_C_INT:,}, "
                                 f"not {value!r}.")
    if p.seed is not None and not isinstance(p.seed, int):
        raise InvalidRequest(f"'seed' must be a whole number, not {p.seed!r}.")
    if request.max_tokens is not None and (not isinstance(request.max_tokens, int)
                                           or request.max_tokens < 1):
        raise InvalidRequest(f"The reply length limit must be at least 1 token, not "
                             f"{request.max_tokens!r}.")
    spec = request.speculation
    if spec.mode not in ("auto", "off", "ngram", "draft"):
        raise InvalidRequest(f"'speculative' must be one of auto, off, ngram or draft, not "
                             f"{spec.mode!r}.")
    if spec.n_max is not None and (not isinstance(spec.n_max, int)
                                   or not 0 <= spec.n_max <= MAX_DRAFT):
        raise InvalidRequest(f"'speculative.n_max' must be a whole number from 0 to "
                             f"{MAX_DRAFT}, not {spec.n_max!r}.")
    if not isinstance(spec.n_min, int) or not 0 <= spec.n_min <= MAX_DRAFT:
        raise InvalidRequest(f"'speculative.n_min' must be a whole number from 0 to "
                             f"{MAX_DRAFT}, not {spec.n_min!r}.")
    if not isinstance(spec.p_min, int | float) or not 0.0 <= spec.p_min <= 1.0:
        raise InvalidRequest(f"'speculative.p_min' must be a number from 0 to 1, not "
                             f"{spec.p_min!r}.")
    if len(request.stop) > MAX_STOP_STRINGS or any(
            not isinstance(s, str) or len(s) > MAX_STOP_CHARS for s in request.stop):
        raise InvalidRequest(f"Send at most {MAX_STOP_STRINGS} stop strings of at most "
                             f"{MAX_STOP_CHARS:,} characters each.")


def prepare_prompt(state: LoadedState, request: GenerationRequest) -> PreparedPrompt:
    """Render and tokenize ``request`` for the loaded model, applying its overflow policy."""
    check_request(request)
    budget = prompt_budget(state.info.n_ctx, request.max_tokens)
    if request.messages is not None:
        if not request.messages:
            raise InvalidRequest("The request has no messages; send at least one.")
        template = state.template
        if request.chat_template:  # e.g. a preset's TEMPLATE; sandboxed all the same
            template = select_template(None, request.chat_template,
                                       bos_token=template.bos_token,
                                       eos_token=template.eos_token)
        add_bos = state.model.add_bos

        # The overflow check counts the full chat's tokens; when it fits (nearly always)
        # those very tokens are the prompt. Remembered, so the chat is not rendered and
        # tokenized twice. Keyed by identity: candidates are slices of the request's own
        # message objects, all alive during this call (and tool calls hold dicts, which
        # don't hash).
        last: dict[tuple[int, ...], list[int]] = {}

        def render(messages: Sequence[ChatMessage]) -> str:
            text = template.render(
                messages, add_generation_prompt=request.add_generation_prompt,
                tools=list(request.tools) if request.tools else None)
            if add_bos:
                text, _ = strip_leading_bos(text, template.bos_token)
            return text

        if has_images(request):  # images go through the projector's tokenizer (mtmd)
            return prepare_image_prompt(state, request, render, budget)

        def tokens_of(messages: Sequence[ChatMessage]) -> list[int]:
            key = tuple(map(id, messages))
            if key in last:
                return last[key]
            text = render(messages)
            last.clear()
            last[key] = _tokenize(state, text)
            return last[key]

        fitted = fit_messages(request.messages, lambda m: len(tokens_of(m)), budget,
                              request.overflow)
        return PreparedPrompt(tokens_of(fitted.messages), fitted.dropped, state)
    if request.prompt is None:
        raise InvalidRequest("The request needs either messages or a prompt.")
    tokens = _tokenize(state, request.prompt)
    if not tokens:
        raise InvalidRequest("The prompt is empty and this model adds no start token; "
                             "send some text.")
    tokens, _ = fit_tokens(tokens, budget, request.overflow, keep_head=int(state.model.add_bos))
    return PreparedPrompt(tokens, 0, state)


def _tokenize(state: LoadedState, text: str) -> list[int]:
    text.encode("utf-8")  # a lone surrogate fails here, before any native call
    with state.lock:
        if state.closed:
            raise ModelNotLoaded("The model was unloaded while this request was being "
                                 "prepared. Load a model and send it again.")
        return state.prompts.tokenize(text)
