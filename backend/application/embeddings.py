"""Embeddings as every front end asks for them: a model name and inputs in, vectors out.

The model is found like any other (its id, a catalog alias, ``owner/repo:QUANT``), opened on
first use beside the chat model (it never replaces it), and fed in batches between the chats'
decode steps (``backend/engine/embeddings.py``). Vectors are L2-normalised. ``dimensions``
shortens them only for models trained for it (Matryoshka: the catalog says which sizes); any
other size is a 400 that says which sizes the model gives.

Threading: ``embed`` runs on the caller's loop; the model list and the hardware probe are read
on a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from backend.engine.embeddings import EmbeddingResult
from backend.engine.engine import Engine, physical_cores
from backend.errors import InvalidRequest
from backend.library.catalog import find_entry
from backend.library.local import LocalModel
from backend.settings_store import SettingsStore

if TYPE_CHECKING:
    from backend.hardware.probe import Hardware

ALL_LAYERS = 999  # embedding models are small: on a GPU, all of it


@dataclass(frozen=True)
class Embedded:
    model: str  # as the caller named it
    vectors: list[list[float]]
    prompt_tokens: int
    dimensions: int
    pooling: str


class EmbeddingService:
    def __init__(self, engine: Engine, settings: SettingsStore,
                 find_model: Callable[[str], LocalModel],
                 hardware: Callable[[], Hardware]) -> None:
        self._engine = engine
        self._settings = settings
        self._find_model = find_model
        self._hardware = hardware

    async def embed(self, model: str, inputs: Sequence[str | Sequence[int]], *,
                    truncate: bool = True, dimensions: int | None = None) -> Embedded:
        """Vectors for ``inputs`` (texts, or token-id lists). Raises ``ModelNotFound``,
        ``InvalidRequest`` (empty or too long input, unsupported ``dimensions``),
        ``ModelLoadFailed``."""
        if isinstance(inputs, str):
            inputs = [inputs]
        if not inputs:
            raise InvalidRequest("There is nothing to embed: send at least one input.")
        local = await asyncio.to_thread(self._find_model, model)
        if local.problem:
            raise InvalidRequest(f"'{local.id}' can't be used: {local.problem}")
        engine_settings = self._settings.snapshot().engine
        hardware = await asyncio.to_thread(self._hardware)
        result = await self._engine.embeddings.embed(
            local.id, local.path, inputs, truncate=truncate,
            n_threads=engine_settings.threads or physical_cores(),
            n_gpu_layers=ALL_LAYERS if hardware.usable_gpus else 0)
        if dimensions is not None and dimensions != result.info.dimensions:
            result = _shortened(result, dimensions, _matryoshka_sizes(local))
        return Embedded(model, result.vectors, result.prompt_tokens,
                        len(result.vectors[0]) if result.vectors else result.info.dimensions,
                        result.info.pooling)


def _matryoshka_sizes(model: LocalModel) -> tuple[int, ...]:
    entry = find_entry(model.repo) if model.repo else None
    return tuple(getattr(entry, "matryoshka_dimensions", ()))


def _shortened(result: EmbeddingResult, dimensions: int, sizes: tuple[int, ...]
               ) -> EmbeddingResult:
    """The leading ``dimensions`` of each vector, normalised again: what a Matryoshka model is
    trained to keep meaningful."""
    native = result.info.dimensions
    if dimensions not in sizes or dimensions > native:
        offer = ", ".join(str(s) for s in sorted({*sizes, native}, reverse=True))
        raise InvalidRequest(f"'{result.info.model_id}' gives {offer}-dimensional vectors, not "
                             f"{dimensions}; ask for one of those, or leave dimensions out.")
    import numpy as np

    array = np.asarray(result.vectors, dtype=np.float64)[:, :dimensions]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    array = np.divide(array, norms, out=array, where=norms > 0)
    return replace(result, vectors=array.tolist())
