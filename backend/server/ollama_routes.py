"""Ollama-compatible routes under /api, for tools written against Ollama's API.

Streaming routes answer NDJSON (one JSON object a line) unless the body says
``"stream": false``; every error is ``{"error": "..."}`` (errors.py), also as the last line of
a stream that fails after it started. Like the OpenAI routes, generation only parses the body
into ``RequestOptions`` and calls ``Hearth.generate``; ``images`` (base64, on /api/chat
messages and /api/generate) become images through ``Hearth.images``, checked like every
front end's. Differences from Ollama, on purpose:
  * ``options.num_ctx`` does not reload the model: a request is served within the context the
    model was loaded with (``hearth serve --ctx``); when they differ, the response carries
    ``X-Hearth-Context-Length`` with the context really used.
  * ``keep_alive`` is accepted; only ``0`` with no prompt (unload) acts. The server's idle
    TTL decides when a model unloads.

Generation lives here; listing, pulling, deleting and creating models in ``ollama_models``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend.api import (
    NO_LIMIT,
    RANDOM_SEED,
    ChatMessage,
    Finished,
    Generation,
    Hearth,
    ImageInput,
    RequestOptions,
    __version__,
    parse_tool_calls,
    speculative_mode,
    template_is_jinja,
)
from backend.errors import InvalidRequest
from backend.server import ollama_models
from backend.server.access_log import hearth_of, log_generation, log_model
from backend.server.ollama_schemas import (
    ChatBody,
    ChatRequest,
    GenerateBody,
    GenerateRequest,
    Message,
    Options,
    created_at,
    ndjson_response,
)
from backend.server.streaming import collect_reply

router = APIRouter(prefix="/api", tags=["ollama"])
router.include_router(ollama_models.router)
Kind = Literal["chat", "generate"]


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


# --- from a request body to RequestOptions ------------------------------------------------------

def _options(body: ChatRequest | GenerateRequest, **more: Any) -> RequestOptions:
    opts: Options = body.options
    max_tokens = opts.num_predict
    if max_tokens is not None and max_tokens <= 0:  # -1 (no limit), -2 (fill the context)
        max_tokens = NO_LIMIT
    seed = opts.seed
    if seed is not None and seed < 0:  # Ollama's "random"
        seed = RANDOM_SEED
    stop = None if opts.stop is None else tuple(
        [opts.stop] if isinstance(opts.stop, str) else opts.stop)
    return RequestOptions(
        temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k, min_p=opts.min_p,
        seed=seed, repeat_penalty=opts.repeat_penalty, repeat_last_n=opts.repeat_last_n,
        presence_penalty=opts.presence_penalty, frequency_penalty=opts.frequency_penalty,
        max_tokens=max_tokens, stop=stop, speculative=speculative_mode(opts.speculative_type),
        speculative_n_max=opts.speculative_n_max, speculative_n_min=opts.speculative_n_min,
        speculative_p_min=opts.speculative_p_min, **_format(body.format), **more)


def _format(fmt: str | dict[str, Any] | None) -> dict[str, Any]:
    """``format``: "json" (any object) or a JSON schema."""
    if fmt is None or fmt == "":
        return {}
    if fmt == "json":
        return {"json_object": True}
    if isinstance(fmt, dict):
        return {"json_schema": fmt}
    raise InvalidRequest(f"'format' must be \"json\" or a JSON schema object, not {fmt!r}.")


async def _images(hearth: Hearth, images: list[str] | None, where: str, first: int = 1
                  ) -> tuple[ImageInput, ...]:
    """Ollama's ``images``: base64 strings (a data URL is taken too)."""
    out = []
    for n, text in enumerate(images or (), first):
        shown = f"Image {n} ({where})"
        out.append(await hearth.images.from_url(text, shown) if text.startswith("data:")
                   else await hearth.images.from_base64_off_loop(text, shown))
    return tuple(out)


async def _messages(hearth: Hearth, messages: list[Message]) -> tuple[ChatMessage, ...]:
    out = []
    count = 0
    for i, m in enumerate(messages):
        images = await _images(hearth, m.images, f"messages[{i}]", count + 1)
        count += len(images)
        calls = tuple({"type": "function", "function": {"name": c.function.name,
                                                        "arguments": c.function.arguments}}
                      for c in m.tool_calls or ())
        out.append(ChatMessage(m.role, m.content, images=images, tool_calls=calls or None,
                               name=m.tool_name))
    return tuple(out)


@router.post("/chat")
async def chat(body: ChatBody, request: Request) -> Response:
    log_model(request, body.model)
    if not body.messages:
        return await _load_or_unload(request, body, "chat")
    options = _options(body, tools=tuple(body.tools) if body.tools else None)
    messages = await _messages(hearth_of(request), body.messages)
    return await _respond(request, body, "chat", messages=messages, options=options)


@router.post("/generate")
async def generate(body: GenerateBody, request: Request) -> Response:
    log_model(request, body.model)
    if not body.prompt:
        return await _load_or_unload(request, body, "generate")
    if body.suffix:
        raise InvalidRequest("'suffix' (fill in the middle) is not supported; send 'prompt' "
                             "only.")
    if body.raw and body.images:
        raise InvalidRequest("A raw prompt can't carry images (they are placed by the chat "
                             "template); send the request without 'raw'.")
    if body.raw:  # the prompt goes to the model exactly as sent, no chat template
        return await _respond(request, body, "generate", prompt=body.prompt,
                              options=_options(body))
    if body.template and not template_is_jinja(body.template):
        raise InvalidRequest("'template' is an Ollama (Go) template, which Hearth can't "
                             "run; send a Jinja chat template, or none to use the model's.")
    options = _options(body, system_prompt=body.system or None,
                       chat_template=body.template or None)
    images = await _images(hearth_of(request), body.images, "images")
    return await _respond(request, body, "generate",
                          messages=(ChatMessage("user", body.prompt, images=images),),
                          options=options)


# --- to response bodies ---------------------------------------------------------------------

def _piece(kind: Kind, model: str, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created_at": created_at()}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    return body | {"done": False}


def _timings(final: Finished, started: float, load_s: float) -> dict[str, Any]:
    u = final.usage
    total = time.monotonic() - started
    prompt_s = u.time_to_first_token_s
    rest = max(total - load_s - prompt_s, 0.0)  # an upper bound for the decode time
    eval_s = min(u.completion_tokens / u.decode_tokens_per_s, rest) \
        if u.decode_tokens_per_s > 0 else rest
    ns = 1_000_000_000
    return {"done": True, "done_reason": "length" if final.finish_reason == "length" else "stop",
            "total_duration": int(total * ns), "load_duration": int(load_s * ns),
            "prompt_eval_count": u.prompt_tokens, "prompt_eval_duration": int(prompt_s * ns),
            "eval_count": u.completion_tokens, "eval_duration": int(eval_s * ns),
            # Hearth extension: speculative decoding's drafted and accepted tokens.
            "draft_count": u.draft_tokens, "draft_accepted_count": u.draft_accepted}


def _ollama_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    content, calls = parse_tool_calls(text)
    return content, [{"function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                     for c in calls]


def _context_header(hearth: Hearth, opts: Options) -> dict[str, str] | None:
    """The context really used, when the client asked for another (see the docstring)."""
    loaded = hearth.loaded
    if loaded and opts.num_ctx and opts.num_ctx != loaded.n_ctx:
        return {"X-Hearth-Context-Length": str(loaded.n_ctx)}
    return None


async def _respond(request: Request, body: ChatRequest | GenerateRequest, kind: Kind, *,
                   options: RequestOptions, messages: tuple[ChatMessage, ...] | None = None,
                   prompt: str | None = None) -> Response:
    hearth, model = hearth_of(request), body.model
    started = time.monotonic()
    events = await hearth.generate(model, messages=messages, prompt=prompt, options=options,
                                   limit_queue=True)
    # From here on every path ends with events.aclose(): it releases the model lease.
    log_generation(request, events)
    hosted = hearth.hosted()
    load_s = max(0.0, hosted.loaded_at - started) if hosted else 0.0  # loaded by this request
    headers = _context_header(hearth, body.options)
    use_tools = bool(events.request.tools)

    def last(final: Finished, text: str = "") -> dict[str, Any]:
        return _piece(kind, model, text) | _timings(final, started, load_s) | \
            ({"context": []} if kind == "generate" else {})

    if not body.stream:
        reply, final = await collect_reply(events)
        if final.error is not None:
            raise final.error
        text, calls = _ollama_calls(reply) if use_tools else (reply, [])
        out = last(final, text)
        if calls:
            out["message"]["tool_calls"] = calls
        return JSONResponse(out, headers=headers)
    return ndjson_response(_lines(events, kind, model, use_tools, last), headers,
                           on_close=events.aclose)


async def _lines(events: Generation, kind: Kind, model: str, use_tools: bool,
                 last: Callable[[Finished], dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    final: Finished | None = None
    held: list[str] = []  # with tools, the reply is held until we know if it is a call
    async for event in events:
        if isinstance(event, Finished):
            final = event
        elif use_tools:
            held.append(event.text)
        else:
            yield _piece(kind, model, event.text)
    assert final is not None
    if final.error is not None:
        yield {"error": final.error.user_message}
        return
    if use_tools:
        text, calls = _ollama_calls("".join(held))
        piece = _piece(kind, model, text)
        if calls:
            piece["message"]["tool_calls"] = calls
        if text or calls:
            yield piece
    yield last(final)


# --- no prompt: load or unload ----------------------------------------------------------------

def _keep_alive_is_zero(value: float | str | None) -> bool:
    if isinstance(value, int | float):
        return value == 0
    return bool(value) and re.fullmatch(r"0+(\.0*)?(ns|us|ms|s|m|h)?", str(value).strip()) \
        is not None


async def _load_or_unload(request: Request, body: ChatRequest | GenerateRequest,
                          kind: Kind) -> Response:
    """Ollama's convention: no prompt loads the model; ``keep_alive: 0`` unloads it."""
    hearth = hearth_of(request)
    if _keep_alive_is_zero(body.keep_alive):
        model = await asyncio.to_thread(hearth.find_model, body.model)
        hosted = hearth.hosted()
        if hosted is not None and Path(hosted.info.path) == model.path:
            await hearth.unload()  # only when idle: running requests are never cut off
        reason = "unload"
    else:
        await hearth.load_as_requested(body.model)
        reason = "load"
    out = _piece(kind, body.model, "") | {"done": True, "done_reason": reason}
    return ndjson_response([out]) if body.stream else JSONResponse(out)
