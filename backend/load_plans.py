"""How a model gets loaded when nobody said exactly how.

The user's engine settings give context, slots, threads and KV type; the offload planner fills
in GPU layers (and may shorten an automatic context) from the GGUF header and *free* memory.
When a load still fails for memory, the host retries with ``next_smaller_plan`` (fewer layers,
then less context) and the plan that worked is remembered per model file, so the next load
starts from it and the user is told.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from backend.engine.types import LoadPlan
from backend.errors import BackendError, InsufficientMemory
from backend.library.local import LocalModel
from backend.paths import hearth_paths
from backend.settings import EngineSettings, write_json_atomic

if TYPE_CHECKING:
    from backend.hardware.planner import PlanRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedLoad:
    plan: LoadPlan
    summary: str  # one sentence for the user: the verdict and why
    offload: object | None = None  # the planner's OffloadPlan, for retries and the GUI's bar


def _remembered_path() -> str:
    return str(hearth_paths().data_dir / "load_plans.json")


def _remembered() -> dict[str, dict[str, int]]:
    try:
        with open(_remembered_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember_good_plan(model: LocalModel, plan: LoadPlan) -> None:
    data = _remembered()
    data[str(model.path)] = {"n_gpu_layers": plan.n_gpu_layers, "n_ctx": plan.n_ctx}
    write_json_atomic(hearth_paths().data_dir / "load_plans.json", data)


def planned_loads(model: LocalModel, engine: EngineSettings) -> Iterator[PlannedLoad]:
    """The plan to try first, then ever smaller ones for the host to retry with."""
    base = LoadPlan(n_gpu_layers=engine.gpu_layers or 0, n_ctx=engine.n_ctx,
                    n_parallel=engine.parallel, n_threads=engine.threads,
                    flash_attn=engine.flash_attn, kv_cache_type=engine.kv_cache_type,
                    backend_sampling=engine.backend_sampling,
                    draft_model_path=draft_model_path(engine),
                    mmproj_path=str(model.mmproj) if model.mmproj else None)
    from backend.engine.model_file import check_gguf_file
    from backend.hardware.planner import next_smaller_plan, plan_offload
    from backend.hardware.probe import probe_hardware
    from backend.library.gguf_meta import read_gguf_metadata

    # A missing, damaged, truncated or unrunnable file fails here, with the sentence the
    # engine would give, but before the engine lets go of the model it holds now (it unloads
    # first, then opens the new file). The header read is cached: the engine's check and
    # this read cost one parse together.
    check_gguf_file(model.path)
    meta = read_gguf_metadata(model.path)
    try:
        hardware = probe_hardware()
    except BackendError:
        yield PlannedLoad(base, "Loading with your settings (this computer's memory could not "
                          "be measured).")
        return
    offload = plan_offload(meta, hardware, plan_request(engine, model.mmproj))
    if offload.verdict == "too_large":
        raise InsufficientMemory(offload.reason)
    remembered = _remembered().get(str(model.path))
    plan = _with_settings(offload.to_load_plan(), engine, model)
    if remembered and engine.gpu_layers is None and \
            remembered["n_gpu_layers"] < plan.n_gpu_layers:
        plan = replace(plan, n_gpu_layers=remembered["n_gpu_layers"],
                       n_ctx=min(plan.n_ctx, remembered["n_ctx"]))
        yield PlannedLoad(plan, f"{offload.reason} Using {plan.n_gpu_layers} GPU layers, "
                          "which worked last time after a load ran out of memory.", offload)
    else:
        yield PlannedLoad(plan, offload.reason, offload)
    current = offload
    while (current := next_smaller_plan(current)) is not None:
        yield PlannedLoad(_with_settings(current.to_load_plan(), engine, model),
                          f"Retrying with less memory: {current.reason}", current)


def plan_request(engine: EngineSettings, mmproj: Path | None = None) -> PlanRequest:
    """What the planner is asked, from the user's engine settings (loads and the GUI's bar),
    with the model's vision projector (``LocalModel.mmproj``) when it has one."""
    from backend.hardware.planner import PlanRequest
    from backend.library.gguf_meta import read_gguf_metadata
    from backend.library.projector import read_projector

    draft = draft_model_path(engine)
    return PlanRequest(
        n_ctx=engine.n_ctx, kv_cache_type=engine.kv_cache_type,
        flash_attn=engine.flash_attn, n_parallel=engine.parallel,
        n_gpu_layers=engine.gpu_layers, margin_bytes=engine.memory_margin_mib << 20,
        draft=read_gguf_metadata(Path(draft)) if draft else None,
        projector=read_projector(mmproj) if mmproj else None)


def draft_model_path(engine: EngineSettings) -> str | None:
    """The draft model's file when the settings name one (loaded beside the model whatever
    the mode: a request that asks for ``off`` or ``ngram`` just doesn't use it); None when
    none is set or it can't be found (the load goes on without it)."""
    if not engine.draft_model:
        return None
    from backend.library.local import resolve_model

    try:
        return str(resolve_model(engine.draft_model, allow_paths=True).path)
    except BackendError:
        log.warning("draft model %r not found; loading without it", engine.draft_model)
        return None


def _with_settings(plan: LoadPlan, engine: EngineSettings, model: LocalModel) -> LoadPlan:
    # Flash attention is the plan's: it honours the setting and decides when that is empty.
    return replace(plan, n_threads=engine.threads, backend_sampling=engine.backend_sampling,
                   draft_model_path=draft_model_path(engine),
                   mmproj_path=str(model.mmproj) if model.mmproj else None)
