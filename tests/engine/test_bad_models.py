"""Bad model files fail with a sentence, the process stays alive, and the next load works."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.engine.engine import Engine
from backend.engine.types import GenerationRequest, LoadPlan, SamplingParams, TextDelta
from backend.errors import ModelLoadFailed
from backend.library.local import LocalModel


def _missing(tmp: Path, good: Path) -> Path:
    return tmp / "nope.gguf"


def _truncated(tmp: Path, good: Path) -> Path:
    path = tmp / "truncated.gguf"
    with good.open("rb") as src:
        path.write_bytes(src.read(good.stat().st_size // 3))
    return path


def _random_bytes(tmp: Path, good: Path) -> Path:
    path = tmp / "random.gguf"
    path.write_bytes(os.urandom(1 << 16))
    return path


def _text_file(tmp: Path, good: Path) -> Path:
    path = tmp / "notes.gguf"
    path.write_text("These are my shopping notes, not a model.\n" * 50)
    return path


def _empty(tmp: Path, good: Path) -> Path:
    path = tmp / "empty.gguf"
    path.touch()
    return path


def _header_only(tmp: Path, good: Path) -> Path:
    path = tmp / "header.gguf"
    with good.open("rb") as src:
        path.write_bytes(src.read(64))
    return path


@pytest.mark.parametrize(("make", "expected"), [
    (_missing, "is not there"),
    (_truncated, "truncated"),
    (_random_bytes, "not a gguf"),
    (_text_file, "text file"),
    (_empty, "empty"),
    (_header_only, "could not load"),
], ids=["missing", "truncated", "random-bytes", "text-file", "empty", "header-only"])
def test_bad_file_fails_clearly_and_the_next_load_works(
        tmp_path: Path, smollm2_path: Path, make: Callable[[Path, Path], Path],
        expected: str) -> None:
    engine = Engine()
    try:
        bad = make(tmp_path, smollm2_path)
        with pytest.raises(ModelLoadFailed) as info:
            asyncio.run(engine.load(LocalModel("bad", bad, "file"), LoadPlan(n_ctx=256)))
        message = info.value.user_message
        assert expected in message.lower(), message
        assert message.endswith("."), "a whole sentence"

        async def load_good_and_generate() -> str:
            await engine.load(LocalModel("good", smollm2_path, "builtin"),
                              LoadPlan(n_ctx=256, n_threads=2))
            out = []
            request = GenerationRequest(prompt="Hello", max_tokens=3,
                                        sampling=SamplingParams(temperature=0))
            async for event in engine.generate(request):
                if isinstance(event, TextDelta):
                    out.append(event.text)
            return "".join(out)

        assert asyncio.run(load_good_and_generate())
    finally:
        engine.close()


def test_a_refused_file_does_not_cost_the_working_model(tmp_path: Path,
                                                        smollm2_path: Path) -> None:
    """The file is checked before the loaded model is unloaded: a bad pick (or a hostile
    request naming a damaged model) leaves the chats on the working one running."""
    engine = Engine()
    try:
        async def scenario() -> tuple[str | None, str]:
            await engine.load(LocalModel("good", smollm2_path, "builtin"),
                              LoadPlan(n_ctx=256, n_threads=2))
            with pytest.raises(ModelLoadFailed):
                await engine.load(LocalModel("bad", _truncated(tmp_path, smollm2_path), "file"),
                                  LoadPlan(n_ctx=256))
            out = []
            request = GenerationRequest(prompt="Hello", max_tokens=3,
                                        sampling=SamplingParams(temperature=0))
            async for event in engine.generate(request):
                if isinstance(event, TextDelta):
                    out.append(event.text)
            return (engine.loaded.model_id if engine.loaded else None), "".join(out)

        model_id, text = asyncio.run(scenario())
        assert model_id == "good" and text
    finally:
        engine.close()
