"""``Hearth.plan_for``: the planner on a real GGUF header with the user's engine settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.api import Hearth, Verdict
from backend.errors import ModelNotFound

STARTER = "smollm2:135m"


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    hearth = Hearth()
    yield hearth
    hearth.close()


def test_plan_follows_the_engine_settings(hearth: Hearth) -> None:
    hearth.settings.update(engine={"n_ctx": 2048, "parallel": 1})
    one = hearth.plan_for(STARTER)
    assert one.n_ctx == 2048 and one.inputs.request.n_parallel == 1
    assert one.total_bytes > 0
    if not hearth.hardware.usable_gpus:
        assert one.verdict is Verdict.CPU and one.n_gpu_layers == 0
    hearth.settings.update(engine={"parallel": 4})
    four = hearth.plan_for(STARTER)
    side = "gpu" if four.n_gpu_layers else "cpu"
    assert getattr(four, side).kv_cache == 4 * getattr(one, side).kv_cache


def test_hardware_is_probed_once(hearth: Hearth) -> None:
    first = hearth.plan_for(STARTER)
    second = hearth.plan_for(STARTER)
    assert first.inputs.hardware is second.inputs.hardware is hearth.hardware


def test_a_plan_that_does_not_fit_is_returned_not_raised(hearth: Hearth) -> None:
    # A margin of 1 TiB leaves no budget on any machine.
    hearth.settings.update(engine={"memory_margin_mib": 1 << 20})
    plan = hearth.plan_for(STARTER)
    assert plan.verdict is Verdict.TOO_LARGE
    assert "smaller" in plan.reason


def test_an_unknown_model_is_a_typed_error(hearth: Hearth) -> None:
    with pytest.raises(ModelNotFound):
        hearth.plan_for("no-such-model-here")
