"""Request and response bodies of the OpenAI-compatible routes (the subset Hearth serves).

Requests accept unknown fields (clients send many we don't use); responses are exact.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from backend.api import OverflowPolicy
from backend.server.validation import (
    MAX_INT32,
    MAX_UINT64,
    MIN_INT64,
    LenientModel,
    RequestModel,
    check_image_count,
    json_body,
)

_Lenient = LenientModel


class ImageUrl(_Lenient):
    url: str
    detail: str | None = None  # accepted; the projector decides the resolution


class ContentPart(_Lenient):
    """A part of a message: ``text``, or ``image_url`` (a data URL, or an http(s) URL the
    server fetches only when its settings allow)."""

    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None

    def url(self) -> str:
        if isinstance(self.image_url, ImageUrl):
            return self.image_url.url
        if isinstance(self.image_url, str):
            return self.image_url
        raise ValueError("an image_url part needs 'image_url': {'url': ...}")


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _known_parts(cls, content: str | list[ContentPart] | None
                     ) -> str | list[ContentPart] | None:
        for n, part in enumerate(content if isinstance(content, list) else ()):
            if part.type == "image_url":
                part.url()
            elif part.type != "text":
                # Silently dropping a part would answer a question the client didn't ask.
                raise ValueError(f"part {n} is of type '{part.type[:40]}'; Hearth reads "
                                 "'text' and 'image_url' parts")
        return content

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")

    def image_urls(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        return [p.url() for p in self.content if p.type == "image_url"]


class StreamOptions(_Lenient):
    include_usage: bool = False


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class _SamplingFields(RequestModel):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=MAX_INT32)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=MIN_INT64, le=MAX_UINT64)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    n: int | None = Field(None, ge=1, le=MAX_INT32)
    overflow: OverflowPolicy | None = Field(
        None, description="Hearth extension: what to do when the prompt does not fit the "
        "context; 'stop' answers 400 context_length_exceeded. Default: the server's setting.")
    # Speculative decoding, llama-server's names: "speculative.type" takes auto, off, ngram,
    # draft or llama-server's spec types (none, ngram-mod, draft-simple...).
    speculative_type: str | None = Field(None, alias="speculative.type", max_length=32)
    speculative_n_max: int | None = Field(None, alias="speculative.n_max", ge=0, le=256)
    speculative_n_min: int | None = Field(None, alias="speculative.n_min", ge=0, le=256)
    speculative_p_min: float | None = Field(None, alias="speculative.p_min", ge=0, le=1)

    def stop_strings(self) -> tuple[str, ...] | None:
        """``None`` when not given (a preset's stop strings apply then)."""
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT32)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _image_count(self) -> ChatCompletionRequest:
        check_image_count(sum(len(m.image_urls()) for m in self.messages))
        return self


class CompletionRequest(_SamplingFields):
    prompt: str | list[str]
    echo: bool = False


ChatCompletionBody = Annotated[ChatCompletionRequest, json_body(ChatCompletionRequest)]
CompletionBody = Annotated[CompletionRequest, json_body(CompletionRequest)]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    # OpenAI's predicted-output counts: drafted tokens the model agreed with, and the rest.
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails = Field(
        default_factory=CompletionTokensDetails)


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


FinishReasonOut = Literal["stop", "length", "tool_calls", "content_filter"]


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: FinishReasonOut | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReasonOut | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReasonOut | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "hearth"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
