"""``Backend``: the one object the GUI holds.

It hides which module does what (engine, library, later the server and the store) behind a
few async calls that return values or async iterators of events, and raise ``BackendError``s.
Every call is safe from the GUI thread: nothing here blocks for more than a lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    GenerationEvent,
    GenerationRequest,
    LoadedModel,
    LoadPlan,
    OverflowPolicy,
    SamplingParams,
)
from backend.library.local import LocalModel, list_models, resolve_model


class Backend:
    def __init__(self) -> None:
        self.engine = Engine()

    def models(self) -> list[LocalModel]:
        return list_models()

    @property
    def loaded(self) -> LoadedModel | None:
        return self.engine.loaded

    async def load_model(self, name: str, plan: LoadPlan | None = None) -> LoadedModel:
        return await self.engine.load(resolve_model(name, allow_paths=True), plan)

    def chat(self, messages: Sequence[ChatMessage], *,
             sampling: SamplingParams | None = None, max_tokens: int | None = None,
             overflow: OverflowPolicy = OverflowPolicy.TRUNCATE_MIDDLE,
             request_id: str | None = None) -> tuple[str, AsyncIterator[GenerationEvent]]:
        """Start a reply; returns its request id (for ``stop``) and its event stream."""
        kwargs = {"request_id": request_id} if request_id else {}
        request = GenerationRequest(messages=tuple(messages),
                                    sampling=sampling or SamplingParams(),
                                    max_tokens=max_tokens, overflow=overflow, **kwargs)
        return request.request_id, self.engine.generate(request)

    def stop(self, request_id: str) -> bool:
        return self.engine.cancel(request_id)

    def close(self) -> None:
        self.engine.close()
