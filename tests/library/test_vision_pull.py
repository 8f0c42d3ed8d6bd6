"""A vision model's projector is found in its Hub repo and pulled with it (the loopback Hub):
`hearth pull` fetches both, the listing pairs them, `hearth show --json` says "vision", a
smaller projector is taken when the planner says the f16 one doesn't fit, and two quants of
one repo downloading at once share the projector file."""

from __future__ import annotations

import json

import pytest

from backend.cli import main
from backend.library import hub
from backend.library.downloads import DownloadManager
from backend.library.local import list_models, models_dir
from backend.library.pull import resolve_pull
from tests.library.hub_server import (
    SMOLLM2_REPO,
    VISION_FILES,
    VISION_PROJECTORS,
    VISION_REPO,
    Blob,
    HubServer,
    vision_repo,
)

pytest_plugins = ["tests.library.hub_server"]


@pytest.fixture(autouse=True)
def _vision_repo(hub_server: HubServer, smollm2_blob: Blob) -> None:
    hub_server.add_repo(vision_repo(smollm2_blob))


def test_pull_fetches_the_projector_and_show_says_vision(
        hub_server: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"{VISION_REPO}:Q4_1"
    assert main(["pull", name]) == 0
    out = capsys.readouterr().out
    assert f"with its vision projector {VISION_PROJECTORS[0]}" in out
    folder = models_dir() / VISION_REPO
    assert sorted(p.name for p in folder.iterdir()) == [VISION_FILES[0], VISION_PROJECTORS[0]]
    assert hub_server.bytes_served[VISION_PROJECTORS[1]] == 0  # the q8_0 was never fetched

    assert main(["list", "--json"]) == 0
    listed = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    assert not any("mmproj" in model_id for model_id in listed)
    entry = listed[name]
    assert entry["vision"] is True and entry["mmproj"].endswith(VISION_PROJECTORS[0])
    assert listed["smollm2:135m"]["vision"] is False

    assert main(["show", name, "--json", "--plan"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "vision" in shown["capabilities"] and "completion" in shown["capabilities"]
    assert shown["mmproj"].endswith(VISION_PROJECTORS[0])
    assert main(["show", "smollm2:135m", "--json"]) == 0
    assert "vision" not in json.loads(capsys.readouterr().out)["capabilities"]

    assert main(["rm", name]) == 0  # the projector goes with the repo's last model
    assert not folder.exists()


def test_a_text_only_repo_pulls_no_projector(hub_server: HubServer) -> None:
    (option,) = hub.list_quants(SMOLLM2_REPO)
    assert option.mmproj is None and len(option.files) == 1


def test_a_smaller_projector_when_the_f16_does_not_fit(hub_server: HubServer) -> None:
    asked = []

    def plan_fits(repo: str, option: object) -> bool:
        asked.append(option)
        return option.mmproj != VISION_PROJECTORS[0]  # type: ignore[attr-defined]

    repo, option = resolve_pull(f"{VISION_REPO}:Q4_1", plan_fits=plan_fits)
    assert repo == VISION_REPO and option.mmproj == VISION_PROJECTORS[1]
    assert option.files == (VISION_FILES[0], VISION_PROJECTORS[1])
    _, default = resolve_pull(f"{VISION_REPO}:Q4_1", plan_fits=lambda r, o: True)
    assert default.mmproj == VISION_PROJECTORS[0]


def test_two_quants_at_once_share_one_projector(hub_server: HubServer) -> None:
    options = hub.list_quants(VISION_REPO)
    assert [o.mmproj for o in options] == [VISION_PROJECTORS[0]] * 2
    hub_server.faults.rate_bps = 20e6  # both run at the same time
    manager = DownloadManager(max_parallel=2)
    try:
        ids = [manager.add(VISION_REPO, o) for o in options]
        assert all(manager.wait(i, timeout=120).state == "completed" for i in ids)
    finally:
        manager.close()
    blob = hub_server.repos[VISION_REPO].files[VISION_PROJECTORS[0]]
    assert hub_server.bytes_served[VISION_PROJECTORS[0]] == blob.size  # fetched once
    folder = models_dir() / VISION_REPO
    assert not list(folder.glob("*.part"))
    paired = {m.id: m.mmproj for m in list_models() if m.repo == VISION_REPO}
    assert paired == {f"{VISION_REPO}:Q4_1": folder / VISION_PROJECTORS[0],
                      f"{VISION_REPO}:Q8_0": folder / VISION_PROJECTORS[0]}


def test_fit_badges_read_the_projectors_header_too(hub_server: HubServer) -> None:
    from backend.library.service import LibraryService
    from backend.settings_store import SettingsStore

    choices = LibraryService(SettingsStore.open()).quants(VISION_REPO)
    assert [c.fit.kind for c in choices] != ["unknown", "unknown"], choices
    ranged = [path for method, path, rng in hub_server.requests
              if method == "GET" and rng and path.endswith(VISION_PROJECTORS[0])]
    assert ranged  # the projector's weights and compute buffer were planned for
