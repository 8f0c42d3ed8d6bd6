"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from backend.engine.grammars import JSON_OBJECT_GRAMMAR, grammar_for_json_schema
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadedModel,
    OverflowPolicy,
    TextDelta,
)
from backend.errors import InvalidRequest, ModelNotFound
from backend.library.local import list_models
from backend.library.presets import apply_preset
from backend.server.context import RequestLogEntry, ServerContext
from backend.server.convert import openai_finish_reason, sampling_from
from backend.server.errors import error_body
from backend.server.openai_schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionBody,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionBody,
    CompletionChoice,
    FunctionCall,
    ModelCard,
    ModelList,
    ToolCall,
    UsageOut,
    _SamplingFields,
)
from backend.server.remote_models import remote_model_cards
from backend.server.streaming import ClosingStreamingResponse, collect_reply
from backend.server.tool_calls import forced_call_schema, parse_tool_calls

router = APIRouter(prefix="/v1", tags=["openai"])


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _local_cards() -> list[ModelCard]:
    # Only models that can run: a download cut short or a damaged file is no model to offer.
    return [ModelCard(id=m.id, created=int(m.path.stat().st_mtime))
            for m in list_models() if m.usable and m.path.exists()]


@router.get("/models", response_model=ModelList)
async def list_model_cards(request: Request) -> ModelList:
    local = await asyncio.to_thread(_local_cards)  # a new file's header is read once
    return ModelList(data=local + await remote_model_cards(_ctx(request)))


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model_card(model_id: str, request: Request) -> ModelCard:
    for card in await asyncio.to_thread(_local_cards):
        if card.id == model_id:
            return card
    ctx = _ctx(request)
    if ctx.all_settings.connections and ctx.remote.is_remote(model_id):
        for card in await remote_model_cards(ctx):
            if card.id == model_id:
                return card
    raise ModelNotFound(f"No model named '{model_id}'. GET /v1/models lists the models.")


def _sampling(ctx: ServerContext, body: _SamplingFields) -> dict[str, Any]:
    if body.n is not None and body.n > 1:
        raise InvalidRequest("n > 1 is not supported: send n separate requests instead.")
    return {"sampling": sampling_from(
        ctx.settings_sampling, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, min_p=body.min_p, seed=body.seed,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        repeat_penalty=body.repeat_penalty), "stop": body.stop_list()}


def _overflow(ctx: ServerContext, body: _SamplingFields) -> OverflowPolicy:
    # Hearth's extension: a client may pick its own policy, e.g. "stop" to get a 400
    # context_length_exceeded instead of a silently shortened conversation.
    return body.overflow or ctx.overflow


def _usage(final: Finished) -> UsageOut:
    u = final.usage
    return UsageOut(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                    total_tokens=u.prompt_tokens + u.completion_tokens,
                    prompt_tokens_details={"cached_tokens": u.cached_prompt_tokens})


def _grammar(body: ChatCompletionRequest, use_tools: bool) -> str | None:
    if use_tools and body.tools:
        try:
            forced = forced_call_schema(body.tools, body.tool_choice)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.") from exc
        if forced is not None:
            if body.response_format and body.response_format.type != "text":
                raise InvalidRequest("Send either a required tool_choice or a "
                                     "response_format, not both.")
            return grammar_for_json_schema(forced)
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_OBJECT_GRAMMAR
    if fmt.json_schema is None or not fmt.json_schema.schema_:
        raise InvalidRequest("response_format json_schema needs a 'json_schema.schema'.")
    return grammar_for_json_schema(fmt.json_schema.schema_)


def _messages(body: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    out = []
    for m in body.messages:
        role = "system" if m.role == "developer" else m.role
        out.append(ChatMessage(role, m.text(),  # type: ignore[arg-type]
                               tool_calls=tuple(m.tool_calls) if m.tool_calls else None,
                               tool_call_id=m.tool_call_id, name=m.name))
    return tuple(out)


def _sse(payload: BaseModel | dict[str, Any]) -> str:
    data = payload.model_dump_json(exclude_none=False) if isinstance(payload, BaseModel) \
        else json.dumps(payload)
    return f"data: {data}\n\n"


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionBody, request: Request) -> Any:
    ctx = _ctx(request)
    started = time.monotonic()
    use_tools = bool(body.tools) and body.tool_choice != "none"
    gen = GenerationRequest(
        messages=_messages(body), grammar=_grammar(body, use_tools),
        max_tokens=body.max_completion_tokens or body.max_tokens or ctx.default_max_tokens,
        tools=tuple(body.tools) if use_tools and body.tools else None,
        overflow=_overflow(ctx, body), **_sampling(ctx, body))
    gen = apply_preset(body.model, gen, body.model_fields_set)

    def require_tools(loaded: LoadedModel) -> None:
        # A preset's own Jinja template may add tool support to a model whose GGUF lacks it.
        if not (loaded.supports_tools or "tools" in (gen.chat_template or "")):
            raise InvalidRequest(
                f"The chat template of '{loaded.model_id}' has no support for tools, so it "
                "can't call them. Use a model trained for tool use (Qwen 2.5/3, Llama 3.1+, "
                "Mistral…) or send the request without 'tools'.")

    events = await ctx.generate(body.model, gen, require_tools if use_tools else None)
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def log(final: Finished | None, status: int = 200) -> None:
        u = final.usage if final else None
        ctx.log(RequestLogEntry(time.time(), "POST", "/v1/chat/completions", body.model,
                                status if final else 499, u.prompt_tokens if u else 0,
                                u.completion_tokens if u else 0,
                                time.monotonic() - started))

    if not body.stream:
        text, final = await collect_reply(events, log)
        content, calls = parse_tool_calls(text) if use_tools else (text, [])
        if final.error is not None:
            raise final.error
        return ChatCompletion(
            id=cid, created=created, model=body.model, usage=_usage(final),
            choices=[ChatChoice(
                message=ChatMessageOut(content=content or (None if calls else ""),
                                       tool_calls=[ToolCall(id=c.id, function=FunctionCall(
                                           name=c.name, arguments=c.arguments))
                                           for c in calls] or None),
                finish_reason="tool_calls" if calls else
                openai_finish_reason(final.finish_reason))])

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: ChunkDelta, finish: str | None = None) -> str:
        return _sse(ChatCompletionChunk(id=cid, created=created, model=body.model, choices=[
            ChunkChoice(delta=delta, finish_reason=finish)]))  # type: ignore[arg-type]

    async def stream() -> AsyncIterator[str]:
        final: Finished | None = None
        held: list[str] = []  # with tools, the reply is held until we know if it is a call
        try:
            yield chunk(ChunkDelta(role="assistant", content=""))
            async for event in events:
                if isinstance(event, TextDelta):
                    if use_tools:
                        held.append(event.text)
                    else:
                        yield chunk(ChunkDelta(content=event.text))
                    continue
                final = event
            assert final is not None
            finish = openai_finish_reason(final.finish_reason)
            if use_tools:
                content, calls = parse_tool_calls("".join(held))
                if content:
                    yield chunk(ChunkDelta(content=content))
                if calls:
                    finish = "tool_calls"
                    yield chunk(ChunkDelta(tool_calls=[
                        {"index": i, "id": c.id, "type": "function",
                         "function": {"name": c.name, "arguments": c.arguments}}
                        for i, c in enumerate(calls)]))
            if final.error is not None:
                yield _sse(error_body("/v1", final.error.http_status,
                                      final.error.user_message))
            yield chunk(ChunkDelta(), finish)
            if include_usage:
                yield _sse(ChatCompletionChunk(id=cid, created=created, model=body.model,
                                               choices=[], usage=_usage(final)))
            yield "data: [DONE]\n\n"
        finally:
            log(final, 200 if final else 499)

    return ClosingStreamingResponse(stream(), "text/event-stream", on_close=events.aclose)


@router.post("/completions", response_model=Completion)
async def completions(body: CompletionBody, request: Request) -> Any:
    ctx = _ctx(request)
    started = time.monotonic()
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequest("Send one prompt per request (a list of one string is fine).")
        prompt = prompt[0]
    gen = GenerationRequest(prompt=prompt, max_tokens=body.max_tokens or ctx.default_max_tokens,
                            overflow=_overflow(ctx, body), **_sampling(ctx, body))
    gen = apply_preset(body.model, gen, body.model_fields_set)
    events = await ctx.generate(body.model, gen)
    cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def log(final: Finished | None, status: int = 200) -> None:
        u = final.usage if final else None
        ctx.log(RequestLogEntry(time.time(), "POST", "/v1/completions", body.model,
                                status if final else 499, u.prompt_tokens if u else 0,
                                u.completion_tokens if u else 0, time.monotonic() - started))

    if not body.stream:
        text, final = await collect_reply(events, log)
        if final.error is not None:
            raise final.error
        return Completion(id=cid, created=created, model=body.model, usage=_usage(final),
                          choices=[CompletionChoice(
                              text=(prompt + text) if body.echo else text,
                              finish_reason=openai_finish_reason(final.finish_reason))])

    def chunk(text: str, finish: str | None = None) -> str:
        return _sse(Completion(id=cid, created=created, model=body.model, choices=[
            CompletionChoice(text=text, finish_reason=finish)]))  # type: ignore[arg-type]

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def stream() -> AsyncIterator[str]:
        final: Finished | None = None
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    yield chunk(event.text)
                else:
                    final = event
            assert final is not None
            if final.error is not None:
                yield _sse(error_body("/v1", final.error.http_status,
                                      final.error.user_message))
            yield chunk("", openai_finish_reason(final.finish_reason))
            if include_usage:
                yield _sse(Completion(id=cid, created=created, model=body.model, choices=[],
                                      usage=_usage(final)))
            yield "data: [DONE]\n\n"
        finally:
            log(final)

    return ClosingStreamingResponse(stream(), "text/event-stream", on_close=events.aclose)
