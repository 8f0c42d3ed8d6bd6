"""The preset loaded in the parameter panel shapes GUI chats: its stop strings, template and
seeded turns apply; its sampling does not override what the panel holds now."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from backend.engine.types import ChatMessage, Finished, GenerationRequest, LoadPlan, TextDelta
from backend.facade import Backend
from backend.library.modelfile import parse_modelfile
from backend.library.presets import build_preset, save_preset

MODELFILE = """FROM smollm2:135m
SYSTEM You count.
PARAMETER temperature 1.5
PARAMETER stop "4"
MESSAGE user Count to 2.
MESSAGE assistant 1, 2
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    backend = Backend()
    asyncio.run(backend.load_model("smollm2:135m", LoadPlan(n_ctx=1024, n_parallel=1)))
    yield backend
    backend.close()


def test_the_active_preset_shapes_gui_chats(backend: Backend) -> None:
    preset, _warnings = build_preset("counter", parse_modelfile(MODELFILE))
    save_preset(preset)
    backend.settings.chat.preset = "counter"
    backend.settings.sampling.temperature = 0.0  # what the panel holds after the load
    sent: list[GenerationRequest] = []
    generate = backend.engine.generate

    def spy(request: GenerationRequest):  # type: ignore[no-untyped-def]
        sent.append(request)
        return generate(request)

    backend.engine.generate = spy  # type: ignore[method-assign]

    async def chat() -> tuple[str, Finished]:
        _, events = backend.chat([ChatMessage("user", "Count to 10, one number per line.")],
                                 max_tokens=60)
        text, final = "", None
        async for event in events:
            if isinstance(event, TextDelta):
                text += event.text
            else:
                final = event
        assert final is not None
        return text, final

    text, final = asyncio.run(chat())
    (request,) = sent
    assert request.stop == ("4",) and request.sampling.temperature == 0.0
    assert [m.role for m in request.messages or ()] == ["system", "user", "assistant", "user"]
    assert "4" not in text and final.finish_reason == "stop"

    backend.settings.chat.preset = None  # no preset: the chat is exactly what was sent
    asyncio.run(chat())
    assert sent[-1].stop == () and [m.role for m in sent[-1].messages or ()] == ["user"]
