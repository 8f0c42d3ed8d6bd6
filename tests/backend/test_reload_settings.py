"""Honest settings: every load-affecting engine setting, changed after a load, is reported by
``Hearth.load_settings_changed`` and applied by ``load(reload=True)``, which the window does
before the next message; settings that a request reads (overflow) never ask for a reload.
Real loads of the starter model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from backend.api import Hearth, LoadedModel

STARTER = "smollm2:135m"
CHANGES: list[tuple[str, Any]] = [
    ("n_ctx", 1024),
    ("threads", 1),
    ("gpu_layers", 0),
    ("kv_cache_type", "q8_0"),
    ("flash_attn", False),
    ("parallel", 2),
]


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    hearth = Hearth()
    hearth.settings.update(engine={"n_ctx": 2048, "parallel": 1})
    asyncio.run(hearth.load(STARTER))
    yield hearth
    hearth.close()


def _reload(hearth: Hearth) -> LoadedModel:
    return asyncio.run(hearth.load(STARTER, reload=True))


@pytest.mark.parametrize(("field", "value"), CHANGES)
def test_a_load_setting_changed_after_the_load_reloads_it(hearth: Hearth, field: str,
                                                          value: Any) -> None:
    assert not hearth.load_settings_changed()
    hearth.settings.update(engine={field: value})
    assert hearth.load_settings_changed()  # "applies to the next message"
    loaded = _reload(hearth)
    assert not hearth.load_settings_changed()
    shown = {"n_ctx": loaded.n_ctx, "threads": loaded.n_threads,
             "parallel": loaded.n_parallel, "gpu_layers": loaded.n_gpu_layers}
    if field in shown:  # what the header and the status bar show: the value now in use
        assert shown[field] == value


def test_request_settings_never_ask_for_a_reload(hearth: Hearth) -> None:
    hearth.settings.update(engine={"overflow": "stop"}, sampling={"temperature": 0.2})
    assert not hearth.load_settings_changed()
