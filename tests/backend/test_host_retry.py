"""A load that runs out of memory is retried smaller; the plan that worked is remembered.

The engine here is a stand-in that fails above a layer count, because running a real GPU out of
memory is what bench/gpu_planner.py does on the GPU machine; this checks the host's logic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine.types import LoadedModel, LoadPlan
from backend.errors import InsufficientMemory
from backend.host import ModelHost
from backend.library.local import LocalModel
from backend.load_plans import PlannedLoad
from backend.paths import hearth_paths


class MemoryBoundEngine:
    def __init__(self, max_layers: int) -> None:
        self.max_layers = max_layers
        self.loaded: LoadedModel | None = None
        self.attempts: list[int] = []

    async def load(self, model: LocalModel, plan: LoadPlan) -> LoadedModel:
        self.attempts.append(plan.n_gpu_layers)
        if plan.n_gpu_layers > self.max_layers:
            raise InsufficientMemory("cudaMalloc failed: out of memory")
        self.loaded = LoadedModel(model.id, str(model.path), plan.n_ctx, 1, 4096, 32,
                                  plan.n_gpu_layers, 2, "gguf")
        return self.loaded

    async def unload(self) -> None:
        self.loaded = None


def plans(_: LocalModel) -> Iterator[PlannedLoad]:
    for layers in (32, 24, 16, 8, 0):
        yield PlannedLoad(LoadPlan(n_gpu_layers=layers), f"{layers} layers on the GPU.")


def test_out_of_memory_retries_smaller_and_remembers(smollm2_path: Path) -> None:
    engine = MemoryBoundEngine(max_layers=20)
    host = ModelHost(engine, plans)  # type: ignore[arg-type]
    info = asyncio.run(host.load("smollm2:135m"))
    assert engine.attempts == [32, 24, 16]
    assert info.n_gpu_layers == 16 and host.last_load_summary == "16 layers on the GPU."
    remembered = json.loads((hearth_paths().data_dir / "load_plans.json").read_text())
    assert remembered[str(smollm2_path)]["n_gpu_layers"] == 16


def test_nothing_fits_says_so() -> None:
    host = ModelHost(MemoryBoundEngine(max_layers=-1), plans)  # type: ignore[arg-type]
    with pytest.raises(InsufficientMemory):
        asyncio.run(host.load("smollm2:135m"))


def test_a_refused_file_keeps_the_loaded_model_hosted(smollm2_path: Path,
                                                      tmp_path: Path) -> None:
    """The engine refuses a damaged file before unloading the working model; the host must
    still know that model is there (it used to forget it, and reload it for the next chat)."""
    from backend.engine.engine import Engine
    from backend.errors import ModelLoadFailed

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(smollm2_path.read_bytes()[:1 << 20])
    engine = Engine()
    host = ModelHost(engine, lambda _: iter([PlannedLoad(LoadPlan(n_ctx=256, n_threads=2),
                                                         "")]))
    try:
        asyncio.run(host.load("smollm2:135m"))
        with pytest.raises(ModelLoadFailed):
            asyncio.run(host.load(LocalModel("broken", broken, "file")))
        hosted = host.current()
        assert hosted is not None and hosted.name == "smollm2:135m"
    finally:
        engine.close()
