"""Embedding routes of both APIs: OpenAI's /v1/embeddings, Ollama's /api/embed and its legacy
/api/embeddings. Each parses its body, asks ``hearth.embeddings`` and shapes the answer.

OpenAI: ``input`` is a string, a list of strings, a list of token ids or a list of those;
``encoding_format`` "float" or "base64" (little-endian float32, as OpenAI's clients decode it);
``dimensions`` shortens vectors of models trained for it, else 400. Ollama: ``input`` a
string or a list of strings, ``truncate`` (default on) cuts inputs longer than the model's
window instead of refusing them. Vectors are L2-normalised in every route.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from backend.api import Embedded
from backend.errors import InvalidRequest
from backend.server.access_log import hearth_of, log_model
from backend.server.validation import MAX_INT32, RequestModel, json_body

router = APIRouter()
Input = str | list[str] | list[int] | list[list[int]]


class OpenAIEmbeddingRequest(RequestModel):
    model: str = Field(min_length=1)
    input: Input
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=MAX_INT32)
    user: str | None = None


class OllamaEmbedRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1, le=MAX_INT32)
    keep_alive: float | str | None = None  # accepted; embedding models stay open


class OllamaLegacyEmbeddingsRequest(RequestModel):
    model: str = Field(min_length=1)
    prompt: str
    keep_alive: float | str | None = None


OpenAIBody = Annotated[OpenAIEmbeddingRequest, json_body(OpenAIEmbeddingRequest)]
EmbedBody = Annotated[OllamaEmbedRequest, json_body(OllamaEmbedRequest)]
LegacyBody = Annotated[OllamaLegacyEmbeddingsRequest, json_body(OllamaLegacyEmbeddingsRequest)]


def _inputs(value: Input) -> list[str] | list[list[int]]:
    """One list of texts or of token-id lists; empty anything is a 400."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif value and all(isinstance(v, int) for v in value):
        items = [value]  # one input given as token ids
    else:
        items = list(value)
    if not items or any(len(item) == 0 for item in items):
        raise InvalidRequest("'input' is empty: send a text, a list of texts, or token ids.")
    return items


async def _embed(request: Request, model: str, inputs: list[Any], *, truncate: bool = True,
                 dimensions: int | None = None) -> Embedded:
    log_model(request, model)
    return await hearth_of(request).embeddings.embed(model, inputs, truncate=truncate,
                                                     dimensions=dimensions)


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@router.post("/v1/embeddings", tags=["openai"])
async def openai_embeddings(body: OpenAIBody, request: Request) -> dict[str, Any]:
    result = await _embed(request, body.model, _inputs(body.input),
                          dimensions=body.dimensions)
    encode = _base64 if body.encoding_format == "base64" else (lambda v: v)
    return {"object": "list", "model": body.model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                     for i, v in enumerate(result.vectors)],
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "total_tokens": result.prompt_tokens}}


@router.post("/api/embed", tags=["ollama"])
async def ollama_embed(body: EmbedBody, request: Request) -> dict[str, Any]:
    started = time.monotonic()
    result = await _embed(request, body.model, _inputs(body.input), truncate=body.truncate,
                          dimensions=body.dimensions)
    return {"model": body.model, "embeddings": result.vectors,
            "total_duration": int((time.monotonic() - started) * 1e9), "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens}


@router.post("/api/embeddings", tags=["ollama"])
async def ollama_legacy_embeddings(body: LegacyBody, request: Request) -> dict[str, Any]:
    result = await _embed(request, body.model, _inputs(body.prompt))
    return {"embedding": result.vectors[0]}
