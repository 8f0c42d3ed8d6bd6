"""Ollama's /api/pull takes a vision model's projector as `hearth pull` and the window do: f16,
unless the planner says the model with it doesn't fit here, then a smaller one (the one
function ``pull.with_fitting_projector``). Against the loopback Hub, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backend.api import EngineSettings, Hearth, ServerSettings, Settings, SettingsStore
from backend.hardware.probe import Hardware
from backend.library.local import models_dir
from backend.library.quants import QuantOption
from backend.library.service import LibraryService
from backend.server.app import create_app
from tests.library.hub_server import (
    VISION_FILES,
    VISION_PROJECTORS,
    VISION_REPO,
    Blob,
    HubServer,
    vision_repo,
)

pytest_plugins = ["tests.library.hub_server"]

TINY = Hardware("Test CPU", 2, 64 << 20, 32 << 20, (), False)  # nothing fits in 32 MiB


@pytest.fixture(autouse=True)
def _vision_repo(hub_server: HubServer, smollm2_blob: Blob) -> None:
    hub_server.add_repo(vision_repo(smollm2_blob))


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    hearth = Hearth(SettingsStore.in_memory(Settings(
        server=ServerSettings(port=0), engine=EngineSettings(n_ctx=512, parallel=1))))
    yield hearth
    hearth.close()


def _pull(hearth: Hearth, model: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(hearth))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                     timeout=120) as client:
            return await client.post("/api/pull", json={"model": model, "stream": False})

    return asyncio.run(run())


def _pulled() -> list[str]:
    return sorted(p.name for p in (models_dir() / VISION_REPO).iterdir())


def test_api_pull_takes_the_f16_projector_when_it_fits(hearth: Hearth,
                                                       hub_server: HubServer) -> None:
    response = _pull(hearth, f"{VISION_REPO}:Q4_1")
    assert response.status_code == 200, response.text
    assert _pulled() == [VISION_FILES[0], VISION_PROJECTORS[0]]
    assert hub_server.bytes_served[VISION_PROJECTORS[1]] == 0


def test_api_pull_takes_a_smaller_projector_when_the_planner_says_so(
        hearth: Hearth, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []

    def fits(self: LibraryService, repo: str, option: QuantOption) -> bool:
        asked.append(option.mmproj)
        return option.mmproj != VISION_PROJECTORS[0]  # the f16 one is too much here

    monkeypatch.setattr(LibraryService, "fits_with_projector", fits)
    response = _pull(hearth, f"hf.co/{VISION_REPO}:q4_1")
    assert response.status_code == 200, response.text
    assert asked[0] == VISION_PROJECTORS[0] and asked[-1] == VISION_PROJECTORS[1]
    assert _pulled() == [VISION_FILES[0], VISION_PROJECTORS[1]]
    assert hub_server.bytes_served[VISION_PROJECTORS[0]] == 0  # never fetched
    (model,) = [m for m in hearth.models() if m.repo == VISION_REPO]
    assert model.mmproj == models_dir() / VISION_REPO / VISION_PROJECTORS[1]


def test_the_real_planner_on_a_small_machine_picks_the_smallest(
        hearth: Hearth, hub_server: HubServer) -> None:
    """Nothing fits 32 MiB: the smallest projector, as `hearth pull` would take."""
    hearth.__dict__["library"] = LibraryService(hearth.settings, hardware=TINY)
    response = _pull(hearth, f"{VISION_REPO}:Q4_1")
    assert response.status_code == 200, response.text
    assert _pulled() == [VISION_FILES[0], VISION_PROJECTORS[1]]


def test_the_window_and_hearth_pull_make_the_same_choice(hub_server: HubServer) -> None:
    """The window's downloads (``LibraryService.download``) and `hearth pull`
    (``resolve_pull``) go through the same function, so they agree."""
    from backend.library.pull import resolve_pull

    library = LibraryService(SettingsStore.in_memory(), hardware=TINY)
    try:
        option = next(o for o in library.quant_options(VISION_REPO) if o.quant == "Q4_1")
        assert option.mmproj == VISION_PROJECTORS[0]  # listed with the f16 one
        download_id = library.download(VISION_REPO, option)
        final: Any = library.downloads.wait(download_id, timeout=120)
        assert final.state == "completed" and VISION_PROJECTORS[1] in final.files
        _, pulled = resolve_pull(f"{VISION_REPO}:Q4_1", plan_fits=library.fits_with_projector)
        assert pulled.mmproj == VISION_PROJECTORS[1]
    finally:
        library.close()
