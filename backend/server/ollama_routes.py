"""Ollama-compatible routes under /api, for tools written against Ollama's API.

Streaming routes answer NDJSON (one JSON object a line) unless the body says
``"stream": false``; every error is ``{"error": "..."}`` (errors.py), also as the last line of
a stream that fails after it started. Differences from Ollama, on purpose:
  * ``options.num_ctx`` does not reload the model: a request is served within the context the
    model was loaded with (``hearth serve --ctx``); when they differ, the response carries
    ``X-Hearth-Context-Length`` with the context really used.
  * ``keep_alive`` is accepted; only ``0`` with no prompt (unload) acts. The server's idle
    TTL decides when a model unloads.

Generation lives here; listing, pulling, deleting and creating models in ``ollama_models``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend import __version__
from backend.engine.grammars import JSON_OBJECT_GRAMMAR, grammar_for_json_schema
from backend.engine.types import ChatMessage, Finished, GenerationRequest, LoadedModel
from backend.errors import InvalidRequest
from backend.library.local import resolve_model
from backend.library.presets import apply_preset, template_is_jinja
from backend.server import ollama_models
from backend.server.context import RequestLogEntry, ServerContext
from backend.server.convert import sampling_from
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
from backend.server.tool_calls import parse_tool_calls

router = APIRouter(prefix="/api", tags=["ollama"])
router.include_router(ollama_models.router)
Kind = Literal["chat", "generate"]


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


# --- generation -------------------------------------------------------------------------------

def _generation_fields(ctx: ServerContext, opts: Options) -> dict[str, Any]:
    seed = opts.seed if opts.seed is None or opts.seed >= 0 else None  # negative: random
    sampling = sampling_from(
        ctx.settings_sampling, temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k,
        min_p=opts.min_p, seed=seed, repeat_penalty=opts.repeat_penalty,
        repeat_last_n=opts.repeat_last_n, presence_penalty=opts.presence_penalty,
        frequency_penalty=opts.frequency_penalty)
    if opts.num_predict is None:
        max_tokens = ctx.default_max_tokens
    else:  # -1 (no limit) and -2 (fill the context) both end at the context's end here
        max_tokens = opts.num_predict if opts.num_predict > 0 else None
    stop = [opts.stop] if isinstance(opts.stop, str) else opts.stop or []
    return {"sampling": sampling, "max_tokens": max_tokens, "stop": tuple(stop),
            "overflow": ctx.overflow}


def _grammar(fmt: str | dict[str, Any] | None) -> str | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSON_OBJECT_GRAMMAR
    if isinstance(fmt, dict):
        return grammar_for_json_schema(fmt)
    raise InvalidRequest(f"'format' must be \"json\" or a JSON schema object, not {fmt!r}.")


def _no_images(images: list[str] | None) -> None:
    if images:
        raise InvalidRequest("Hearth's models can't see images yet; send text only.")


def _messages(messages: list[Message]) -> tuple[ChatMessage, ...]:
    out = []
    for m in messages:
        _no_images(m.images)
        calls = tuple({"type": "function", "function": {"name": c.function.name,
                                                        "arguments": c.function.arguments}}
                      for c in m.tool_calls or ())
        out.append(ChatMessage(m.role, m.content, tool_calls=calls or None, name=m.tool_name))
    return tuple(out)


def _require_tools(loaded: LoadedModel) -> None:
    if not loaded.supports_tools:
        raise InvalidRequest(f"The chat template of '{loaded.model_id}' has no support for "
                             "tools. Use a model trained for tool use, or send no 'tools'.")


@router.post("/chat")
async def chat(body: ChatBody, request: Request) -> Response:
    if not body.messages:
        return await _load_or_unload(_ctx(request), body, "chat")
    ctx = _ctx(request)
    gen = GenerationRequest(messages=_messages(body.messages), grammar=_grammar(body.format),
                            tools=tuple(body.tools) if body.tools else None,
                            **_generation_fields(ctx, body.options))
    gen = apply_preset(body.model, gen, body.options.given())
    return await _respond(ctx, body.model, body.options, body.stream, gen, "chat",
                          use_tools=bool(body.tools))


@router.post("/generate")
async def generate(body: GenerateBody, request: Request) -> Response:
    if not body.prompt:
        return await _load_or_unload(_ctx(request), body, "generate")
    _no_images(body.images)
    if body.suffix:
        raise InvalidRequest("'suffix' (fill in the middle) is not supported; send 'prompt' "
                             "only.")
    ctx = _ctx(request)
    fields = _generation_fields(ctx, body.options) | {"grammar": _grammar(body.format)}
    if body.raw:  # the prompt goes to the model exactly as sent, no chat template
        gen = GenerationRequest(prompt=body.prompt, **fields)
    else:
        if body.template and not template_is_jinja(body.template):
            raise InvalidRequest("'template' is an Ollama (Go) template, which Hearth can't "
                                 "run; send a Jinja chat template, or none to use the model's.")
        turns = [ChatMessage("system", body.system)] if body.system else []
        gen = GenerationRequest(messages=(*turns, ChatMessage("user", body.prompt)),
                                chat_template=body.template or None, **fields)
    gen = apply_preset(body.model, gen, body.options.given())
    return await _respond(ctx, body.model, body.options, body.stream, gen, "generate")


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
            "eval_count": u.completion_tokens, "eval_duration": int(eval_s * ns)}


def _ollama_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    content, calls = parse_tool_calls(text)
    return content, [{"function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                     for c in calls]


async def _respond(ctx: ServerContext, model: str, opts: Options, stream: bool,
                   gen: GenerationRequest, kind: Kind, *, use_tools: bool = False) -> Response:
    started = time.monotonic()
    events = await ctx.generate(model, gen, _require_tools if use_tools else None)
    # From here on every path ends with events.aclose(): it releases the model lease.
    hosted = ctx.host.current()
    load_s = max(0.0, hosted.loaded_at - started) if hosted else 0.0  # loaded by this request
    loaded = ctx.host.engine.loaded
    headers = {"X-Hearth-Context-Length": str(loaded.n_ctx)} \
        if loaded and opts.num_ctx and opts.num_ctx != loaded.n_ctx else None

    def log(final: Finished | None) -> None:
        u = final.usage if final else None
        ctx.log(RequestLogEntry(time.time(), "POST", f"/api/{kind}", model,
                                200 if final else 499, u.prompt_tokens if u else 0,
                                u.completion_tokens if u else 0, time.monotonic() - started))

    def last(final: Finished, text: str = "") -> dict[str, Any]:
        return _piece(kind, model, text) | _timings(final, started, load_s) | \
            ({"context": []} if kind == "generate" else {})

    if not stream:
        reply, final = await collect_reply(events, log)
        if final.error is not None:
            raise final.error
        text, calls = _ollama_calls(reply) if use_tools else (reply, [])
        out = last(final, text)
        if calls:
            out["message"]["tool_calls"] = calls
        return JSONResponse(out, headers=headers)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        final: Finished | None = None
        held: list[str] = []  # with tools, the reply is held until we know if it is a call
        try:
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
        finally:
            log(final)

    return ndjson_response(lines(), headers, on_close=events.aclose)


def _keep_alive_is_zero(value: float | str | None) -> bool:
    if isinstance(value, int | float):
        return value == 0
    return bool(value) and re.fullmatch(r"0+(\.0*)?(ns|us|ms|s|m|h)?", str(value).strip()) \
        is not None


async def _load_or_unload(ctx: ServerContext, body: ChatRequest | GenerateRequest,
                          kind: Kind) -> Response:
    """Ollama's convention: no prompt loads the model; ``keep_alive: 0`` unloads it."""
    if _keep_alive_is_zero(body.keep_alive):
        model = resolve_model(body.model)
        hosted = ctx.host.current()
        if hosted is not None and Path(hosted.info.path) == model.path:
            await ctx.host.unload()  # only when idle: running requests are never cut off
        reason = "unload"
    else:
        async with ctx.host.lease(body.model,
                                  load_if_needed=ctx.settings.jit_loading):
            pass
        reason = "load"
    out = _piece(kind, body.model, "") | {"done": True, "done_reason": reason}
    return ndjson_response([out]) if body.stream else JSONResponse(out)
