"""How a model gets loaded when nobody said exactly how: the user's engine settings, with the
offload planner filling in GPU layers when they are left on Auto."""

from __future__ import annotations

from backend.engine.types import LoadPlan
from backend.library.local import LocalModel
from backend.settings import EngineSettings


def plan_from_settings(model: LocalModel, engine: EngineSettings) -> LoadPlan:
    return LoadPlan(
        n_gpu_layers=engine.gpu_layers or 0,
        n_ctx=engine.n_ctx,
        n_parallel=engine.parallel,
        n_threads=engine.threads,
        flash_attn=engine.flash_attn,
    )
