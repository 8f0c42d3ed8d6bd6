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
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import (
    AliasChoices,
    Field,
    field_validator,
)

from backend.errors import ModelLoadFailed
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.local import LocalModel
from backend.library.quants import parse_quant
from backend.server.streaming import ClosingStreamingResponse
from backend.server.validation import (
    MAX_INT32,
    MAX_UINT64,
    MIN_INT64,
    LenientModel,
    RequestModel,
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

    def given(self) -> set[str]:
        """Option names the client set to a value: those win over a preset's parameters."""
        return {k for k in self.model_fields_set if getattr(self, k, None) is not None}


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


class GenerateRequest(_GenerateFields):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None  # accepted and ignored: the prompt cache does this job
    raw: bool = False
    images: list[str] | None = None


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


@lru_cache(maxsize=128)
def _header_facts(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    # Keyed on mtime and size so a replaced file is read again; a header read is ~0.1 s.
    try:
        meta = read_gguf_metadata(path)
    except ModelLoadFailed:  # a file the engine can't read gets fewer details
        return {}
    return {"architecture": meta.architecture, "parameter_count": meta.parameter_count,
            "quant": meta.quant_name, "n_ctx_train": meta.n_ctx_train, "n_layer": meta.n_layer,
            "chat_template": meta.chat_template}


def header_facts(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError:
        return {}
    return _header_facts(str(path), st.st_mtime_ns, st.st_size)


def _size_label(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}".rstrip("0").rstrip(".") + unit
    return str(count)


def digest_of(*parts: object) -> str:
    """A stable id for a model or preset; not a content hash (hashing GBs per listing is
    too slow), but it changes whenever the file or preset does."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def details(model: LocalModel, parent: str = "") -> dict[str, Any]:
    facts = header_facts(model.path)
    arch = facts.get("architecture", "")
    return {"parent_model": parent, "format": "gguf", "family": arch,
            "families": [arch] if arch else None,
            "parameter_size": _size_label(facts["parameter_count"]) if facts else "",
            "quantization_level": model.quant or facts.get("quant")
            or parse_quant(model.path.name) or ""}


def model_entry(name: str, model: LocalModel, *, modified: float, digest: str,
                parent: str = "") -> dict[str, Any]:
    """One entry of ``GET /api/tags``."""
    return {"name": name, "model": name, "modified_at": created_at(modified),
            "size": model.size_bytes, "digest": digest, "details": details(model, parent)}


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
