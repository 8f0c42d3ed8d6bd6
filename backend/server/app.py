"""The FastAPI app factory: routes, error shapes and the security middleware, nothing global."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from backend import __version__
from backend.server import ollama_routes, openai_routes
from backend.server.context import ServerContext
from backend.server.errors import install_error_handlers
from backend.server.openapi import install_openapi
from backend.server.security import SecurityMiddleware


def create_app(ctx: ServerContext) -> FastAPI:
    app = FastAPI(title="Hearth", version=__version__,
                  description="OpenAI- and Ollama-compatible API of a local Hearth engine.",
                  docs_url="/docs", redoc_url=None)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)
    install_openapi(app)

    @app.get("/health", tags=["meta"])
    async def health(request: Request) -> dict[str, Any]:
        hosted = ctx.host.current()
        # The queue figures let clients (and tests) see load, and see a cancelled stream
        # leave the engine. Public like the rest of /health: counts only, nothing private.
        return {"status": "ok", "version": __version__,
                "model": hosted.name if hosted else None, "queue": ctx.queue_stats()}

    @app.get("/", tags=["meta"], response_class=PlainTextResponse)
    async def root() -> str:
        # What Ollama answers here: tools probe it to see whether a server is up.
        return "Hearth is running"

    @app.head("/", tags=["meta"], include_in_schema=False)
    async def root_head() -> PlainTextResponse:
        return PlainTextResponse("")

    server = ctx.settings
    app.add_middleware(SecurityMiddleware, bound_host=server.host, api_key=server.api_key,
                       extra_origins=server.cors_origins, max_body_bytes=server.max_body_bytes)
    return app
