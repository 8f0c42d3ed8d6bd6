"""``Backend.plan_for``: the planner on a real GGUF header with the user's engine settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.errors import ModelNotFound
from backend.facade import Backend
from backend.hardware.planner import Verdict

STARTER = "smollm2:135m"


@pytest.fixture
def backend() -> Iterator[Backend]:
    backend = Backend()
    yield backend
    backend.close()


def test_plan_follows_the_engine_settings(backend: Backend) -> None:
    backend.settings.engine = backend.settings.engine.model_copy(
        update={"n_ctx": 2048, "parallel": 1})
    one = backend.plan_for(STARTER)
    assert one.n_ctx == 2048 and one.inputs.request.n_parallel == 1
    assert one.total_bytes > 0
    if not backend.hardware.usable_gpus:
        assert one.verdict is Verdict.CPU and one.n_gpu_layers == 0
    backend.settings.engine = backend.settings.engine.model_copy(update={"parallel": 4})
    four = backend.plan_for(STARTER)
    side = "gpu" if four.n_gpu_layers else "cpu"
    assert getattr(four, side).kv_cache == 4 * getattr(one, side).kv_cache


def test_hardware_is_probed_once(backend: Backend) -> None:
    first = backend.plan_for(STARTER)
    second = backend.plan_for(STARTER)
    assert first.inputs.hardware is second.inputs.hardware is backend.hardware


def test_a_plan_that_does_not_fit_is_returned_not_raised(backend: Backend) -> None:
    # A margin of 1 TiB leaves no budget on any machine.
    backend.settings.engine = backend.settings.engine.model_copy(
        update={"memory_margin_mib": 1 << 20})
    plan = backend.plan_for(STARTER)
    assert plan.verdict is Verdict.TOO_LARGE
    assert "smaller" in plan.reason


def test_an_unknown_model_is_a_typed_error(backend: Backend) -> None:
    with pytest.raises(ModelNotFound):
        backend.plan_for("no-such-model-here")
