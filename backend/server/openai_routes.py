"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Each generation route only parses its body into ``RequestOptions`` plus messages (images
through ``Hearth.images``) or a prompt and calls ``Hearth.generate``: defaults, saved
settings, presets, grammars for structured output, image limits and the tools and vision
capability checks are the application layer's, the same for every front end.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from backend.api import (
    ChatMessage,
    Finished,
    FinishReason,
    Hearth,
    RequestOptions,
    TextDelta,
    parse_tool_calls,
    speculative_mode,
)
from backend.errors import InvalidRequest, ModelNotFound
from backend.server.access_log import hearth_of, log_generation, log_model
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

router = APIRouter(prefix="/v1", tags=["openai"])


def _local_cards(hearth: Hearth) -> list[ModelCard]:
    # Only models that can run: a download cut short or a damaged file is no model to offer.
    cards = [ModelCard(id=m.id, created=int(m.path.stat().st_mtime))
             for m in hearth.models() if m.usable and m.path.exists()]
    # A server started with `--model /path/x.gguf` serves that file by its id although it
    # is in no model folder: it is listed first, or clients that take the first listed
    # model would name another one (and load it in its place).
    hosted = hearth.hosted()
    if hosted is not None and all(c.id != hosted.info.model_id for c in cards):
        path = Path(hosted.info.path)
        created = int(path.stat().st_mtime) if path.exists() else 0
        cards.insert(0, ModelCard(id=hosted.info.model_id, created=created))
    return cards


@router.get("/models", response_model=ModelList)
async def list_model_cards(request: Request) -> ModelList:
    hearth = hearth_of(request)
    local = await asyncio.to_thread(_local_cards, hearth)  # a new file's header is read once
    return ModelList(data=local + await remote_model_cards(request))


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model_card(model_id: str, request: Request) -> ModelCard:
    hearth = hearth_of(request)
    log_model(request, model_id)
    for card in await asyncio.to_thread(_local_cards, hearth):
        if card.id == model_id:
            return card
    if hearth.is_remote(model_id):
        for card in await remote_model_cards(request):
            if card.id == model_id:
                return card
    raise ModelNotFound(f"No model named '{model_id}'. GET /v1/models lists the models.")


# --- from a request body to RequestOptions ------------------------------------------------------

def _options(body: _SamplingFields, **more: Any) -> RequestOptions:
    if body.n is not None and body.n > 1:
        raise InvalidRequest("n > 1 is not supported: send n separate requests instead.")
    # ``overflow`` is Hearth's extension: a client may pick its own policy, e.g. "stop" to get
    # a 400 context_length_exceeded instead of a silently shortened conversation.
    return RequestOptions(
        temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
        seed=body.seed, presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty, repeat_penalty=body.repeat_penalty,
        stop=body.stop_strings(), overflow=body.overflow,
        speculative=speculative_mode(body.speculative_type),
        speculative_n_max=body.speculative_n_max, speculative_n_min=body.speculative_n_min,
        speculative_p_min=body.speculative_p_min, **more)


def _chat_options(body: ChatCompletionRequest) -> RequestOptions:
    fmt = body.response_format
    json_schema = None
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or not fmt.json_schema.schema_:
            raise InvalidRequest("response_format json_schema needs a 'json_schema.schema'.")
        json_schema = fmt.json_schema.schema_
    return _options(body, max_tokens=body.max_completion_tokens or body.max_tokens,
                    json_schema=json_schema,
                    json_object=fmt is not None and fmt.type == "json_object",
                    tools=tuple(body.tools) if body.tools else None,
                    tool_choice=body.tool_choice)


async def _messages(hearth: Hearth, body: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    """The conversation, ``image_url`` parts turned into images by the application (data
    URLs; http(s) URLs only when the settings allow fetching them)."""
    out = []
    count = 0
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role
        images = []
        for url in m.image_urls():
            count += 1
            images.append(await hearth.images.from_url(url, f"Image {count} (messages[{i}])"))
        out.append(ChatMessage(role, m.text(), images=tuple(images),  # type: ignore[arg-type]
                               tool_calls=tuple(m.tool_calls) if m.tool_calls else None,
                               tool_call_id=m.tool_call_id, name=m.name))
    return tuple(out)


# --- to response bodies ---------------------------------------------------------------------

def _finish_reason(reason: FinishReason) -> str:
    # OpenAI has no "cancelled"; a cancelled stream's client is usually gone anyway.
    return "length" if reason == "length" else "stop"


def _usage(final: Finished) -> UsageOut:
    u = final.usage
    return UsageOut(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                    total_tokens=u.prompt_tokens + u.completion_tokens,
                    prompt_tokens_details={"cached_tokens": u.cached_prompt_tokens},
                    completion_tokens_details={
                        "accepted_prediction_tokens": u.draft_accepted,
                        "rejected_prediction_tokens": u.draft_tokens - u.draft_accepted})


def _sse(payload: BaseModel | dict[str, Any]) -> str:
    data = payload.model_dump_json(exclude_none=False) if isinstance(payload, BaseModel) \
        else json.dumps(payload)
    return f"data: {data}\n\n"


def _stream_error(final: Finished) -> str:
    assert final.error is not None
    return _sse(error_body("/v1", final.error.http_status, final.error.user_message))


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionBody, request: Request) -> Any:
    log_model(request, body.model)
    hearth = hearth_of(request)
    events = await hearth.generate(body.model, messages=await _messages(hearth, body),
                                   options=_chat_options(body), limit_queue=True)
    log_generation(request, events)
    # Tools as the request builder resolved them (tool_choice "none" drops them).
    use_tools = bool(events.request.tools)
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    if not body.stream:
        text, final = await collect_reply(events)
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
                finish_reason="tool_calls" if calls else _finish_reason(final.finish_reason))])

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: ChunkDelta, finish: str | None = None) -> str:
        return _sse(ChatCompletionChunk(id=cid, created=created, model=body.model, choices=[
            ChunkChoice(delta=delta, finish_reason=finish)]))  # type: ignore[arg-type]

    async def stream() -> AsyncIterator[str]:
        final: Finished | None = None
        held: list[str] = []  # with tools, the reply is held until we know if it is a call
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
        finish = _finish_reason(final.finish_reason)
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
            yield _stream_error(final)
        yield chunk(ChunkDelta(), finish)
        if include_usage:
            yield _sse(ChatCompletionChunk(id=cid, created=created, model=body.model,
                                           choices=[], usage=_usage(final)))
        yield "data: [DONE]\n\n"

    return ClosingStreamingResponse(stream(), "text/event-stream", on_close=events.aclose)


@router.post("/completions", response_model=Completion)
async def completions(body: CompletionBody, request: Request) -> Any:
    log_model(request, body.model)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequest("Send one prompt per request (a list of one string is fine).")
        prompt = prompt[0]
    events = await hearth_of(request).generate(
        body.model, prompt=prompt, options=_options(body, max_tokens=body.max_tokens),
        limit_queue=True)
    log_generation(request, events)
    cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    if not body.stream:
        text, final = await collect_reply(events)
        if final.error is not None:
            raise final.error
        return Completion(id=cid, created=created, model=body.model, usage=_usage(final),
                          choices=[CompletionChoice(
                              text=(prompt + text) if body.echo else text,
                              finish_reason=_finish_reason(final.finish_reason))])

    def chunk(text: str, finish: str | None = None) -> str:
        return _sse(Completion(id=cid, created=created, model=body.model, choices=[
            CompletionChoice(text=text, finish_reason=finish)]))  # type: ignore[arg-type]

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def stream() -> AsyncIterator[str]:
        final: Finished | None = None
        async for event in events:
            if isinstance(event, TextDelta):
                yield chunk(event.text)
            else:
                final = event
        assert final is not None
        if final.error is not None:
            yield _stream_error(final)
        yield chunk("", _finish_reason(final.finish_reason))
        if include_usage:
            yield _sse(Completion(id=cid, created=created, model=body.model, choices=[],
                                  usage=_usage(final)))
        yield "data: [DONE]\n\n"

    return ClosingStreamingResponse(stream(), "text/event-stream", on_close=events.aclose)
