"""Speculation where llama.cpp samples inside its graph (backend sampling: the default with a
whole model on a GPU). The graph samples one position per sequence and a batch with more
fails whole, so drafts need the request's chain on the CPU."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.engine.engine import Engine
from backend.engine.types import Finished, LoadPlan
from backend.library.local import LocalModel
from tests.engine.test_speculation import EDIT, collect, reply, request


def test_drafts_with_sampling_in_the_graph(smollm2_path: Path) -> None:
    """Backend sampling (the default with a whole model on a GPU; llama.cpp attaches chains on
    a CPU too) samples one position per sequence, and a batch with more fails whole. A
    request that asks for drafts gets its chain on the CPU; Auto without a draft model keeps
    the graph's chain and does not draft; no step fails, and both replies are the model's."""
    eng = Engine()
    asyncio.run(eng.load(LocalModel("smollm2:135m", smollm2_path, "builtin"), LoadPlan(
        n_ctx=2048, n_parallel=3, n_threads=2, flash_attn=False, backend_sampling=True)))
    try:
        assert eng.loaded is not None and eng.loaded.backend_sampling
        alone, _ = reply(eng, request(EDIT, "off", max_tokens=80))

        # The draft length is pinned: whether drafting pays in a step shared by two streams is
        # the timed policy's call (with 2 threads a drafted token costs over half a step, and a
        # second stream's token as much, so with both running it often doesn't).
        async def both() -> list[tuple[str, Finished]]:
            return await asyncio.gather(collect(eng, request(EDIT, "ngram", max_tokens=80,
                                                             n_min=2, n_max=2)),
                                        collect(eng, request(EDIT, "auto", max_tokens=80)))

        (drafted, with_drafts), (auto, without) = asyncio.run(both())
        assert with_drafts.usage.draft_accepted > 0, with_drafts.usage
        assert without.usage.draft_tokens == 0
        assert auto == alone
        assert drafted[:40] == alone[:40]  # apart from float differences further on
    finally:
        eng.close()
