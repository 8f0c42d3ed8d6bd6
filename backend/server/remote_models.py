"""Remote connections' models in the API server's model lists.

Listed as ``"<connection>/<model>"`` beside the local models; a chat request naming one is
forwarded by ``Hearth.generate`` (the routes need no other change). A connection that doesn't
answer is left out of the list and logged, never an error for the whole list: a client
listing models should not fail because someone's vLLM box is off.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from backend.api import RemoteModelRef
from backend.server.access_log import hearth_of
from backend.server.ollama_schemas import created_at, digest_of
from backend.server.openai_schemas import ModelCard

log = logging.getLogger(__name__)

# A model list is on the critical path of many clients' startup: a shorter wait per
# connection than the app's own listing allows.
LIST_TIMEOUT_S = 3.0


async def remote_models(request: Request) -> list[RemoteModelRef]:
    hearth = hearth_of(request)
    if not hearth.settings.snapshot().connections:
        return []  # no connections: not even the import of httpx and keyring
    listing = await hearth.remote.list_models(timeout_s=LIST_TIMEOUT_S)
    for name, error in listing.errors.items():
        log.warning("connection %s left out of the model list: %s", name, error.user_message)
    return listing.models


def _started_at(request: Request) -> float:
    return request.app.state.started_at  # type: ignore[no-any-return]


async def remote_model_cards(request: Request) -> list[ModelCard]:
    return [ModelCard(id=ref.id, created=int(_started_at(request)),
                      owned_by=ref.connection_name) for ref in await remote_models(request)]


async def remote_tag_entries(request: Request) -> list[dict[str, Any]]:
    """Entries of Ollama's ``/api/tags``; sizes and details are unknown for remote models."""
    return [{"name": ref.id, "model": ref.id, "modified_at": created_at(_started_at(request)),
             "size": 0, "digest": digest_of("remote", ref.id),
             "details": {"parent_model": "", "format": "", "family": "", "families": None,
                         "parameter_size": "", "quantization_level": ""}}
            for ref in await remote_models(request)]
