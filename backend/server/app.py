"""The FastAPI app factory: routes, error shapes, the request log and the security middleware,
nothing global.

Every route reaches the application through ``request.app.state.hearth`` (``hearth_of``), the
one ``Hearth`` the window, the command line and this server share.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from backend.api import Hearth, ServerSettings, __version__
from backend.server import embedding_routes, ollama_routes, openai_routes
from backend.server.access_log import RequestLogMiddleware, hearth_of
from backend.server.errors import install_error_handlers
from backend.server.openapi import install_openapi
from backend.server.security import SecurityMiddleware


def create_app(hearth: Hearth, server: ServerSettings | None = None) -> FastAPI:
    """The API of ``hearth``. ``server``: the settings it starts with (default: the current
    ones); kept until the next start, as the Server page says."""
    app = FastAPI(title="Hearth", version=__version__,
                  description="OpenAI- and Ollama-compatible API of a local Hearth engine.",
                  docs_url="/docs", redoc_url=None)
    app.state.hearth = hearth
    app.state.started_at = time.time()  # the "created" date of remote models' entries
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)
    app.include_router(embedding_routes.router)
    install_openapi(app)

    @app.get("/health", tags=["meta"])
    async def health(request: Request) -> dict[str, Any]:
        hearth = hearth_of(request)
        hosted = hearth.hosted()
        # The queue figures let clients (and tests) see load, and see a cancelled stream
        # leave the engine. Public like the rest of /health: counts only, nothing private.
        return {"status": "ok", "version": __version__,
                "model": hosted.name if hosted else None, "queue": hearth.queue_stats()}

    @app.get("/", tags=["meta"], response_class=PlainTextResponse)
    async def root() -> str:
        # What Ollama answers here: tools probe it to see whether a server is up.
        return "Hearth is running"

    @app.head("/", tags=["meta"], include_in_schema=False)
    async def root_head() -> PlainTextResponse:
        return PlainTextResponse("")

    server = server or hearth.settings.snapshot().server
    app.add_middleware(SecurityMiddleware, bound_host=server.host, api_key=server.api_key,
                       extra_origins=server.cors_origins, max_body_bytes=server.max_body_bytes)
    # Added last, so it is the outermost: it also logs what the security middleware refuses.
    app.add_middleware(RequestLogMiddleware, log=hearth.request_log)
    return app
