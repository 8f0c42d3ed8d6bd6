"""Ollama's ``/api/pull``: downloads ``owner/repo:QUANT`` (default Q4_K_M), or a catalog alias,
through the library's one download manager, reporting progress in Ollama's shape.

The download is the application's (``Hearth.library.downloads``): the window shows a pull an
API client started, and a client that hangs up leaves it running, as Ollama does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend.api import (
    TERMINAL,
    CatalogEntry,
    DownloadManager,
    DownloadProgress,
    Hearth,
    QuantOption,
)
from backend.errors import InvalidRequest, ModelNotFound
from backend.server.access_log import hearth_of, log_model
from backend.server.ollama_schemas import PullBody, digest_of, ndjson_response

router = APIRouter()
DEFAULT_QUANT = "Q4_K_M"  # what Ollama's library tags mostly are


def _catalog_entry(hearth: Hearth, name: str) -> CatalogEntry | None:
    lowered = name.lower()
    return next((e for e in hearth.library.catalog()
                 if e.alias == lowered or e.repo.lower() == lowered), None)


def _hub_name(hearth: Hearth, name: str) -> tuple[str, str | None]:
    """(repo, quant or None for the default) for "owner/repo:Q4_K_M", "hf.co/…", an alias."""
    name = re.sub(r"^(https?://)?(hf\.co|huggingface\.co)/", "", name.strip())
    entry = _catalog_entry(hearth, name)
    if entry is not None and entry.alias.lower() == name.lower():
        return entry.repo, entry.default_quant
    base, _, tag = name.partition(":")
    entry = _catalog_entry(hearth, base)
    repo = entry.repo if entry else base
    if repo.count("/") != 1:
        raise ModelNotFound(f"'{name}' is not a model Hearth can pull: name a Hugging Face "
                            "GGUF repo as owner/repo, optionally with :QUANT (like "
                            "bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M).")
    return repo, None if tag.lower() in ("", "latest") else tag


def _pick(options: list[QuantOption], quant: str | None) -> QuantOption | None:
    """The option for ``quant`` (any case); with none asked for, Q4_K_M, else the middle one."""
    if not options:
        return None
    if quant is not None:
        return next((o for o in options if o.quant == quant.upper()), None)
    preferred = next((o for o in options if o.quant == DEFAULT_QUANT), None)
    return preferred or options[len(options) // 2]


async def _follow(hearth: Hearth, repo: str, quant: str | None
                  ) -> AsyncIterator[DownloadProgress]:
    """Start the download and yield its progress until it ends (the last one is terminal)."""
    options = await asyncio.to_thread(hearth.library.quant_options, repo)
    option = _pick(options, quant)
    if option is None:
        have = ", ".join(o.quant for o in options) or "none"
        raise ModelNotFound(f"'{repo}' has no {quant or 'GGUF'} file. Quants there: {have}.")
    manager: DownloadManager = await asyncio.to_thread(lambda: hearth.library.downloads)
    async with manager.events() as events:  # subscribed before the download starts
        # The library's download: a vision model's projector is the one the planner picks
        # here (f16 unless it doesn't fit), as for `hearth pull` and the window.
        download_id = await asyncio.to_thread(hearth.library.download, repo, option)
        progress = manager.progress(download_id)
        yield progress
        while progress.state not in TERMINAL:
            event = await anext(events)
            if event.id == download_id:
                progress = event
                yield progress


@router.post("/pull")
async def pull(body: PullBody, request: Request) -> Response:
    hearth = hearth_of(request)
    log_model(request, body.model)
    repo, quant = _hub_name(hearth, body.model)
    progress = _follow(hearth, repo, quant)
    first = await anext(progress)  # errors before any download (no such repo) are HTTP errors

    async def updates() -> AsyncIterator[DownloadProgress]:
        try:  # closed explicitly: a client that hangs up must not leave a subscriber behind
            p = first
            yield p
            while p.state not in TERMINAL:
                p = await anext(progress)
                yield p
        finally:
            await progress.aclose()

    async def lines() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        async for p in updates():
            if p.state == "verifying":
                yield {"status": "verifying sha256 digest"}
            elif p.state not in TERMINAL:
                digest = f"sha256:{digest_of(p.repo, *p.files)}"
                yield {"status": f"pulling {digest[7:19]}", "digest": digest,
                       "total": p.bytes_total, "completed": p.bytes_done}
            elif p.state != "completed":
                yield {"error": p.error.user_message if p.error else f"The download {p.state}."}
                return
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    if body.stream:
        return ndjson_response(lines())
    async for p in updates():
        if p.state in TERMINAL and p.state != "completed":
            raise p.error or InvalidRequest(f"The download {p.state}.")
    return JSONResponse({"status": "success"})
