"""The OpenAPI document, made true to what the server answers.

FastAPI documents a 422 for every route with a body or parameters, while Hearth answers 400
(both APIs' clients expect it), and it knows nothing of the statuses the middleware and the
typed errors produce. The routes parse their bodies themselves (``validation.json_body``: one
pass with the model's own JSON parser), so FastAPI does not see those bodies either. This
module rewrites the generated document once: the request bodies, and for every operation the
error statuses it can really give, each with its API's error shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from backend.server.embedding_routes import (
    OllamaEmbedRequest,
    OllamaLegacyEmbeddingsRequest,
    OpenAIEmbeddingRequest,
)
from backend.server.ollama_schemas import (
    ChatRequest,
    CreateRequest,
    GenerateRequest,
    NamedRequest,
    PullRequest,
)
from backend.server.openai_schemas import ChatCompletionRequest, CompletionRequest

_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/v1/chat/completions"): ChatCompletionRequest,
    ("post", "/v1/completions"): CompletionRequest,
    ("post", "/api/chat"): ChatRequest, ("post", "/api/generate"): GenerateRequest,
    ("post", "/api/show"): NamedRequest, ("delete", "/api/delete"): NamedRequest,
    ("post", "/api/pull"): PullRequest, ("post", "/api/create"): CreateRequest,
    ("post", "/v1/embeddings"): OpenAIEmbeddingRequest,
    ("post", "/api/embed"): OllamaEmbedRequest,
    ("post", "/api/embeddings"): OllamaLegacyEmbeddingsRequest,
}
_GENERATING = frozenset({"/v1/chat/completions", "/v1/completions", "/api/chat",
                         "/api/generate"})
_EMBEDDING = frozenset({"/v1/embeddings", "/api/embed", "/api/embeddings"})
_NAMING_A_MODEL = _GENERATING | _EMBEDDING | {"/v1/models/{model_id}", "/api/show",
                                              "/api/delete", "/api/pull", "/api/create"}
_PUBLIC = frozenset({"/", "/health"})

_DESCRIPTIONS = {
    "400": "The request is not valid (malformed JSON, a wrong field, a value out of range, a "
           "prompt over the context under the 'stop' policy).",
    "401": "An API key is required and was missing or wrong.",
    "403": "The Host header or the requesting web page's origin is not allowed.",
    "404": "No model of that name.",
    "409": "The model is not loaded and loading on request is switched off.",
    "413": "The body is larger than the server's limit.",
    "415": "The body was not declared as JSON (Content-Type: application/json).",
    "500": "Hearth failed while handling the request.",
    "502": "A remote server this request was forwarded to failed.",
    "503": "Too many requests are waiting: retry shortly.",
    "507": "The model does not fit in this machine's free memory.",
}

_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
_OLLAMA_ERROR = {"type": "object", "required": ["error"],
                 "properties": {"error": {"type": "string"}}}


def _statuses(method: str, path: str) -> list[str]:
    if path in _PUBLIC:
        return ["403"]
    codes = ["401", "403", "500"]
    if method in ("post", "put", "patch", "delete"):
        codes += ["400", "413", "415"]
    if path in _NAMING_A_MODEL:
        codes.append("404")
    if path in _GENERATING:
        codes += ["409", "502", "503", "507"]
    if path in _EMBEDDING:
        codes.append("507")
    if path == "/api/pull":
        codes += ["502", "503", "507"]
    return sorted(set(codes))


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that documents what the server really answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                body = _BODIES.get((method, path))
                if body is not None and "requestBody" not in op:
                    op["requestBody"] = {"required": True, "content": {
                        "application/json": {"schema": _component(body, components)}}}
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                shape = _OLLAMA_ERROR if path.startswith("/api/") else _OPENAI_ERROR
                for code in _statuses(method, path):
                    responses.setdefault(code, {"description": _DESCRIPTIONS[code], "content": {
                        "application/json": {"schema": shape}}})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)  # only the 422s referred to them
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _component(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """``model``'s JSON schema as a component (its nested models too); a $ref to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, nested in schema.pop("$defs", {}).items():
        components.setdefault(name, nested)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}
