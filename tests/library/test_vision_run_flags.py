"""`hearth run MODEL --mmproj PROJ.gguf` and `hearth serve --model MODEL --mmproj PROJ.gguf`:
the pair is checked as `hearth import --mmproj` checks it (before any load), the model then
reads images, and the pairing lasts the run: the saved library is left as it was."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.cli import main
from backend.settings_store import SettingsStore
from tests.backend.image_crafting import png
from tests.fixtures.synth_mmproj import ProjectorShape, write_projector
from tests.library.projectors import write_projector as write_wrong_projector
from tests.server.conftest import start_hearth_server


@pytest.fixture
def pair(tmp_path: Path, smollm2_path: Path) -> tuple[Path, Path]:
    model = Path(shutil.copy(smollm2_path, tmp_path / "seer.gguf"))
    # In a folder of its own: a projector beside the model would be paired without the flag.
    elsewhere = tmp_path / "projectors"
    elsewhere.mkdir()
    return model, write_projector(elsewhere / "seer-mmproj-f16.gguf", ProjectorShape())


@pytest.fixture
def sigterm() -> Iterator[None]:
    """`hearth serve` in this process sets a SIGTERM handler: put pytest's back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def _nothing_saved() -> None:
    library = SettingsStore.open().snapshot().library
    assert library.projectors == () and library.extra_files == ()


def _no_server(_: Any) -> Any:
    raise AssertionError("the server must not start when the pair is refused")


def test_run_with_a_projector_reads_an_image_this_run_only(
        pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, projector = pair
    cat = tmp_path / "cat.png"
    cat.write_bytes(png(40, 30))
    seen = subprocess.run(
        [sys.executable, "-m", "backend.cli", "run", str(model), "What is this?", "--mmproj",
         str(projector), "--image", str(cat), "--max-tokens", "4", "--threads", "2",
         "--verbose"], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert seen.returncode == 0, seen.stderr
    assert "[4 tokens" in seen.stderr
    _nothing_saved()
    # Without the flag the same file is text-only again.
    assert main(["run", str(model), "What is this?", "--image", str(cat), "--max-tokens",
                 "1"]) == 1
    assert "can't see images" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_projector_that_does_not_fit_is_refused_before_loading(
        command: str, pair: tuple[Path, Path], tmp_path: Path, sigterm: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = pair
    wrong = write_wrong_projector(tmp_path / "other-mmproj.gguf", 2048)
    args = ["run", str(model), "hi"] if command == "run" else ["serve", "--model", str(model)]
    assert main([*args, "--mmproj", str(wrong)], server=_no_server) == 1
    err = capsys.readouterr().err
    assert "other-mmproj.gguf' can't be paired with 'seer.gguf'" in err
    assert "2,048-wide" in err and "mmproj file from the model's own repository" in err
    assert main([*args, "--mmproj", str(tmp_path / "missing.gguf")], server=_no_server) == 1
    assert "There is no .gguf projector file" in capsys.readouterr().err
    text_model = write_wrong_projector(tmp_path / "not-a-projector.gguf", 576, arch=b"llama")
    assert main([*args, "--mmproj", str(text_model)], server=_no_server) == 1
    assert "not 'clip'" in capsys.readouterr().err
    _nothing_saved()


def test_serve_needs_a_model_for_its_projector(pair: tuple[Path, Path], sigterm: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, projector = pair
    assert main(["serve", "--mmproj", str(projector)], server=_no_server) == 1
    assert "give both" in capsys.readouterr().err


def test_run_refuses_a_projector_for_a_remote_model(pair: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, projector = pair
    assert main(["run", "--url", "http://127.0.0.1:9/v1", "their-model", "hi", "--mmproj",
                 str(projector)]) == 1
    assert "remote model sees images" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_with_a_projector_answers_about_an_image(pair: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    model, projector = pair
    home = tmp_path / "serve-home"
    server = start_hearth_server(home, "--mmproj", str(projector), model=str(model),
                                 base_args=("--threads", "2", "--parallel", "1", "--ctx",
                                            "2048"))
    try:
        shown = httpx.post(f"{server.url}/api/show", json={"model": "seer"}, timeout=30)
        assert "vision" in shown.json()["capabilities"], shown.text
        image = base64.b64encode(png(40, 30)).decode()
        reply = httpx.post(f"{server.url}/api/chat", timeout=300, json={
            "model": "seer", "stream": False, "options": {"num_predict": 3},
            "messages": [{"role": "user", "content": "What is this?", "images": [image]}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["done"] is True
    finally:
        server.stop()
    saved = list(home.rglob("settings.json"))
    assert not saved or "seer-mmproj" not in saved[0].read_text()
