"""Ollama-compatible routes under /api (filled in by the Ollama routes work)."""

from __future__ import annotations

from fastapi import APIRouter

from backend import __version__

router = APIRouter(prefix="/api", tags=["ollama"])


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}
