"""The preset loaded in the parameter panel shapes GUI chats: its stop strings, template and
seeded turns apply; its sampling does not override what the panel holds now.

The window asks ``Hearth.generate`` with the panel's values as explicit options and the
panel's preset as the active one (``app/views/reply_stream.py``); this checks that contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from backend.api import (
    ChatMessage,
    Finished,
    GenerationEvent,
    Hearth,
    LoadPlan,
    RequestOptions,
    TextDelta,
)
from backend.engine.types import GenerationRequest

STARTER = "smollm2:135m"
MODELFILE = """FROM smollm2:135m
SYSTEM You count.
PARAMETER temperature 1.5
PARAMETER stop "4"
MESSAGE user Count to 2.
MESSAGE assistant 1, 2
"""
# What the panel holds after the load: its values are explicit, so they win over the preset's.
PANEL = RequestOptions(temperature=0.0, max_tokens=60)


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    hearth = Hearth()
    asyncio.run(hearth.load(STARTER, LoadPlan(n_ctx=1024, n_parallel=1)))
    yield hearth
    hearth.close()


def _chat(hearth: Hearth, preset: str | None) -> tuple[GenerationRequest, str, Finished]:
    async def chat() -> tuple[GenerationRequest, str, Finished]:
        generation = await hearth.generate(
            STARTER, messages=[ChatMessage("user", "Count to 10, one number per line.")],
            options=PANEL, preset=preset, load_if_needed=False)
        text = ""
        async with generation:
            event: GenerationEvent
            async for event in generation:
                if isinstance(event, TextDelta):
                    text += event.text
        assert generation.final is not None
        return generation.request, text, generation.final

    return asyncio.run(chat())


def test_the_active_preset_shapes_gui_chats(hearth: Hearth) -> None:
    hearth.presets.create("counter", MODELFILE)
    request, text, final = _chat(hearth, "counter")
    assert request.stop == ("4",) and request.sampling.temperature == 0.0
    assert [m.role for m in request.messages or ()] == ["system", "user", "assistant", "user"]
    assert "4" not in text and final.finish_reason == "stop"

    request, _text, _final = _chat(hearth, None)  # no preset: exactly what was sent
    assert request.stop == () and [m.role for m in request.messages or ()] == ["user"]
