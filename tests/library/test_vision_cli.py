"""`hearth import MODEL.gguf --mmproj PROJ.gguf` and `hearth run MODEL --image FILE`: SmolLM2
paired with a random-weight projector (tests/fixtures/synth_mmproj.py) reads an image from
the terminal; a text-only model and a bad image are refused with a sentence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import main
from tests.backend.image_crafting import png
from tests.fixtures.synth_mmproj import ProjectorShape, write_projector
from tests.library.projectors import write_projector as write_wrong_projector


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))


@pytest.fixture
def pair(tmp_path: Path, smollm2_path: Path) -> tuple[Path, Path]:
    model = Path(shutil.copy(smollm2_path, tmp_path / "seer.gguf"))
    return model, write_projector(tmp_path / "seer-mmproj-f16.gguf", ProjectorShape())


def test_import_with_a_projector_then_run_with_an_image(
        pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, projector = pair
    assert main(["import", str(model), "--mmproj", str(projector)]) == 0
    assert "seeing images through seer-mmproj-f16.gguf" in capsys.readouterr().out
    assert main(["show", "seer", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "vision" in shown["capabilities"] and shown["mmproj"] == str(projector)

    cat = tmp_path / "cat.png"
    cat.write_bytes(png(40, 30))
    seen = hearth("run", "seer", "What is this?", "--image", str(cat), "--max-tokens", "4",
                  "--threads", "2", "--verbose")
    assert seen.returncode == 0, seen.stderr
    assert "[4 tokens" in seen.stderr

    # A chat: the first turn carries the image, kept in the history (as the window keeps it)
    # and sent again with the next turn.
    chat = subprocess.run(
        [sys.executable, "-m", "backend.cli", "run", "seer", "--image", str(cat),
         "--max-tokens", "3", "--threads", "2"], input="What is this?\nAnd now?\n/bye\n",
        capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert chat.returncode == 0, chat.stderr
    from backend.store import ChatStore

    store = ChatStore.open_default()
    try:
        (conversation,) = store.list_conversations()
        turns = [m for m in store.messages(conversation.id) if m.role == "user"]
        assert [len(m.images) for m in turns] == [1, 0]
        assert turns[0].images[0].path.read_bytes() == cat.read_bytes()
    finally:
        store.close()

    refused = hearth("run", "smollm2:135m", "What is this?", "--image", str(cat),
                     "--max-tokens", "4", "--threads", "2")
    assert refused.returncode == 1
    assert "can't see images" in refused.stderr and "seer" in refused.stderr


def test_bad_pairs_and_bad_images_are_refused(
        pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = pair
    wrong = write_wrong_projector(tmp_path / "other-mmproj.gguf", 2048)
    assert main(["import", str(model), "--mmproj", str(wrong)]) == 1
    assert "2,048-wide" in capsys.readouterr().err
    svg = tmp_path / "x.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    # The image is read before any model loads: refused at once.
    assert main(["run", "smollm2:135m", "hi", "--image", str(svg)]) == 1
    assert "SVG" in capsys.readouterr().err
