"""Ollama's API shapes (``api/types.go``): request bodies, and the entries the listing routes
answer with, built from our own values.

Requests accept unknown fields (Ollama adds fields often, and clients send them all);
``options`` keys Hearth has no use for (``num_gpu``, ``mirostat``…) are accepted and ignored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import (
    AliasChoices,
    Field,
    field_validator,
    model_validator,
)

from backend.api import GgufMetadata, Hearth, LocalModel
from backend.errors import BackendError
from backend.server.streaming import ClosingStreamingResponse
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


class Options(_Lenient):
    num_ctx: int | None = Field(None, ge=1, le=MAX_INT32)
    # -1: no limit, -2: fill the context
    num_predict: int | None = Field(None, ge=-2, le=MAX_INT32)
    temperature: float | None = Field(None, ge=0, le=100)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=MAX_INT32)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=MIN_INT64, le=MAX_UINT64)  # negative: random
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    repeat_last_n: int | None = Field(None, ge=-1, le=MAX_INT32)  # -1: the whole context
    presence_penalty: float | None = Field(None, ge=-100, le=100)
    frequency_penalty: float | None = Field(None, ge=-100, le=100)
    # Speculative decoding (Hearth extension, llama-server's names): see the OpenAI routes.
    speculative_type: str | None = Field(None, alias="speculative.type", max_length=32)
    speculative_n_max: int | None = Field(None, alias="speculative.n_max", ge=0, le=256)
    speculative_n_min: int | None = Field(None, alias="speculative.n_min", ge=0, le=256)
    speculative_p_min: float | None = Field(None, alias="speculative.p_min", ge=0, le=1)


class ToolCallFunction(_Lenient):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallIn(_Lenient):
    function: ToolCallFunction


class Message(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None


class _GenerateFields(RequestModel):
    model: str = Field(min_length=1)
    stream: bool = True
    format: str | dict[str, Any] | None = None  # "json", or a JSON schema
    options: Options = Field(default_factory=Options)
    keep_alive: float | str | None = None  # accepted; the server's idle TTL decides
    think: bool | str | None = None  # accepted; reasoning is not split out

    @field_validator("options", mode="before")
    @classmethod
    def _null_options(cls, value: Any) -> Any:
        return {} if value is None else value  # some clients send "options": null


class ChatRequest(_GenerateFields):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _image_count(self) -> ChatRequest:
        check_image_count(sum(len(m.images or ()) for m in self.messages))
        return self


class GenerateRequest(_GenerateFields):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None  # accepted and ignored: the prompt cache does this job
    raw: bool = False
    images: list[str] | None = None

    @model_validator(mode="after")
    def _image_count(self) -> GenerateRequest:
        check_image_count(len(self.images or ()))
        return self


class NamedRequest(RequestModel):
    # Older clients send "name", newer ones "model".
    model: str = Field(min_length=1, validation_alias=AliasChoices("model", "name"))


class PullRequest(NamedRequest):
    stream: bool = True
    insecure: bool | None = None


class CreateRequest(NamedRequest):
    stream: bool = True
    modelfile: str | None = None  # the old body: a whole Modelfile as text
    from_: str | None = Field(None, alias="from")
    system: str | None = None
    template: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    quantize: str | None = None


ChatBody = Annotated[ChatRequest, json_body(ChatRequest)]
GenerateBody = Annotated[GenerateRequest, json_body(GenerateRequest)]
NamedBody = Annotated[NamedRequest, json_body(NamedRequest)]
PullBody = Annotated[PullRequest, json_body(PullRequest)]
CreateBody = Annotated[CreateRequest, json_body(CreateRequest)]


def created_at(ts: float | None = None) -> str:
    """RFC 3339 in UTC with nanosecond-free precision, as Ollama's clients parse it."""
    moment = datetime.fromtimestamp(ts if ts is not None else time.time(), UTC)
    return moment.isoformat().replace("+00:00", "Z")


def header(hearth: Hearth, model: LocalModel) -> GgufMetadata | None:
    """What the model file's header says; None for a file that can't be read (it gets fewer
    details, never an error: a listing must not fail because of one damaged file).
    Blocking, cached while the file is unchanged."""
    try:
        return hearth.header(model)
    except BackendError:
        return None


def _size_label(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}".rstrip("0").rstrip(".") + unit
    return str(count)


def digest_of(*parts: object) -> str:
    """A stable id for a model or preset; not a content hash (hashing GBs per listing is
    too slow), but it changes whenever the file or preset does."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def details(model: LocalModel, meta: GgufMetadata | None, parent: str = "") -> dict[str, Any]:
    arch = meta.architecture if meta else ""
    # Ollama lists a vision model's projector as a second family.
    families = [arch] + (["clip"] if model.mmproj is not None else []) if arch else None
    return {"parent_model": parent, "format": "gguf", "family": arch,
            "families": families,
            "parameter_size": _size_label(meta.parameter_count) if meta else "",
            "quantization_level": model.quant or (meta.quant_name if meta else "") or ""}


def model_entry(name: str, model: LocalModel, meta: GgufMetadata | None, *, modified: float,
                digest: str, parent: str = "") -> dict[str, Any]:
    """One entry of ``GET /api/tags``."""
    return {"name": name, "model": name, "modified_at": created_at(modified),
            "size": model.size_bytes, "digest": digest,
            "details": details(model, meta, parent)}


def ndjson_response(lines: AsyncIterator[dict[str, Any]] | Iterable[dict[str, Any]],
                    headers: dict[str, str] | None = None,
                    on_close: Callable[[], Awaitable[None]] | None = None) -> StreamingResponse:
    """One JSON object a line, flushed as each is produced (Ollama's streaming format)."""

    async def encoded() -> AsyncIterator[str]:
        if isinstance(lines, AsyncIterator):
            try:
                async for line in lines:
                    yield json.dumps(line) + "\n"
            finally:
                await lines.aclose()  # type: ignore[attr-defined]
        else:
            for line in lines:
                yield json.dumps(line) + "\n"

    return ClosingStreamingResponse(encoded(), "application/x-ndjson", headers, on_close)
