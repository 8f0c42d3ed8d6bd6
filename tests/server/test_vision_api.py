"""Images through both APIs, on a real `hearth serve`: SmolLM2 paired with a random-weight
projector (tests/fixtures/synth_mmproj.py) reads images sent as OpenAI ``image_url`` data URLs
and Ollama ``images``; the built-in SmolLM2 (text-only) given one is refused with a 400 that
names the model that can see; hostile images are refused alone with clear 400s while the
server keeps answering."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.image_crafting import png
from tests.fixtures.synth_mmproj import ProjectorShape, write_projector
from tests.server.conftest import MODEL, HearthServer, start_hearth_server

VISION = "o/Vision-GGUF:Q4_1"
PNG = png(48, 32, (20, 120, 200))
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
SVG = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg"/>').decode()


def _models_dir(home: Path) -> Path:
    from backend.paths import hearth_paths

    old = os.environ.get("HEARTH_HOME")
    os.environ["HEARTH_HOME"] = str(home)
    try:
        return hearth_paths().models_dir
    finally:
        if old is None:
            os.environ.pop("HEARTH_HOME", None)
        else:
            os.environ["HEARTH_HOME"] = old


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory: pytest.TempPathFactory,
                  smollm2_path: Path) -> Iterator[HearthServer]:
    """The vision model loaded; remote image URLs allowed (so only the address rules
    refuse a loopback one), at most 4 images a request, a 4 MB body limit."""
    home = tmp_path_factory.mktemp("vision-serve")
    folder = _models_dir(home) / "o" / "Vision-GGUF"
    folder.mkdir(parents=True)
    shutil.copy(smollm2_path, folder / "Vision-Q4_1.gguf")
    write_projector(folder / "mmproj-Vision-F16.gguf", ProjectorShape())
    server = start_hearth_server(home, model=VISION, settings={
        "images": {"allow_remote_urls": True, "max_images": 4},
        "server": {"max_body_bytes": 4 << 20}})
    yield server
    server.stop()


def _chat(server: HearthServer, content: Any, model: str = VISION, **more: Any
          ) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=300, json={
        "model": model, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": content}], **more})


def _parts(*urls: str, text: str = "What is in the picture?") -> list[dict[str, Any]]:
    return [{"type": "text", "text": text},
            *({"type": "image_url", "image_url": {"url": u}} for u in urls)]


def test_openai_image_url_reaches_the_model(vision_server: HearthServer) -> None:
    seen = _chat(vision_server, _parts(DATA_URL))
    assert seen.status_code == 200, seen.text
    text_only = _chat(vision_server, _parts())
    assert text_only.status_code == 200, text_only.text
    with_image = seen.json()["usage"]["prompt_tokens"]
    assert with_image - text_only.json()["usage"]["prompt_tokens"] >= 16  # the image's tokens
    assert seen.json()["usage"]["completion_tokens"] == 4
    # The same image again: the prompt cache holds it (a follow-up is not encoded again).
    again = _chat(vision_server, _parts(DATA_URL))
    assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] >= 16


def test_ollama_images_reach_the_model(vision_server: HearthServer) -> None:
    b64 = base64.b64encode(PNG).decode()
    chat = httpx.post(f"{vision_server.url}/api/chat", timeout=300, json={
        "model": VISION, "stream": False, "options": {"num_predict": 3, "temperature": 0},
        "messages": [{"role": "user", "content": "Describe it.", "images": [b64]}]})
    assert chat.status_code == 200, chat.text
    assert chat.json()["eval_count"] == 3 and chat.json()["prompt_eval_count"] > 16
    gen = httpx.post(f"{vision_server.url}/api/generate", timeout=300, json={
        "model": VISION, "stream": False, "prompt": "Describe it.", "images": [b64],
        "options": {"num_predict": 3}})
    assert gen.status_code == 200, gen.text
    raw = httpx.post(f"{vision_server.url}/api/generate", timeout=60, json={
        "model": VISION, "stream": False, "prompt": "x", "raw": True, "images": [b64]})
    assert raw.status_code == 400 and "raw" in raw.json()["error"]


def test_show_lists_vision_among_the_capabilities(vision_server: HearthServer) -> None:
    shown = httpx.post(f"{vision_server.url}/api/show", json={"model": VISION}, timeout=60)
    assert shown.status_code == 200
    assert {"completion", "vision"} <= set(shown.json()["capabilities"])
    assert shown.json()["projector_info"]["general.architecture"] == "clip"
    plain = httpx.post(f"{vision_server.url}/api/show", json={"model": MODEL}, timeout=60)
    assert "vision" not in plain.json()["capabilities"]


def test_a_text_only_model_says_which_models_can_see(vision_server: HearthServer) -> None:
    r = _chat(vision_server, _parts(DATA_URL), model=MODEL)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_vision_capable"
    assert f"'{MODEL}' can't see images" in error["message"] and VISION in error["message"]
    ollama = httpx.post(f"{vision_server.url}/api/chat", timeout=60, json={
        "model": MODEL, "stream": False, "messages": [
            {"role": "user", "content": "hi", "images": [base64.b64encode(PNG).decode()]}]})
    assert ollama.status_code == 400 and VISION in ollama.json()["error"]
    # Refused before loading: the vision model is still the one loaded.
    ps = httpx.get(f"{vision_server.url}/api/ps", timeout=30).json()
    assert [m["name"] for m in ps["models"]] == [VISION]


HOSTILE: list[tuple[str, Any, str]] = [
    ("bad base64", _parts("data:image/png;base64,%%%not-base64%%%"), "not valid base64"),
    ("svg", _parts(f"data:image/svg+xml;base64,{SVG}"), "SVG"),
    ("svg as png", _parts(f"data:image/png;base64,{SVG}"), "SVG"),
    ("file url", _parts("file:///etc/passwd"), "file: URL"),
    ("loopback url", _parts("http://127.0.0.1:9/cat.png"), "local or private-network"),
    ("metadata url", _parts("http://169.254.169.254/latest/meta-data"), "private-network"),
    ("100 images", _parts(*[DATA_URL] * 100), "at most 16"),
    ("5 images", _parts(*[DATA_URL] * 5), "at most 4"),
    ("no url", [{"type": "image_url"}], "image_url"),
    ("audio part", [{"type": "input_audio", "input_audio": {"data": "AAAA"}}], "input_audio"),
]


@pytest.mark.parametrize(("case", "content", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_images_fail_alone(vision_server: HearthServer, case: str, content: Any,
                                   words: str) -> None:
    r = _chat(vision_server, content)
    assert r.status_code == 400, (case, r.text)
    assert words in r.json()["error"]["message"], r.text


def test_a_huge_data_url_is_refused_and_the_server_carries_on(
        vision_server: HearthServer) -> None:
    huge = "data:image/png;base64," + "A" * (6 << 20)
    r = _chat(vision_server, _parts(huge))
    message = r.json()["error"]["message"]
    assert r.status_code == 413 and "byte limit" in message and "server.max_body_bytes" in message
    ollama = httpx.post(f"{vision_server.url}/api/chat", timeout=60, json={
        "model": VISION, "stream": False,
        "messages": [{"role": "user", "content": "x", "images": ["!!" * 10]}]})
    assert ollama.status_code == 400 and "not valid base64" in ollama.json()["error"]
    ok = _chat(vision_server, "Hi")
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
    queue = vision_server.health()["queue"]
    assert queue["in_flight"] == 0 and queue["waiting"] == 0


def test_remote_urls_are_refused_by_default(hearth_server: HearthServer) -> None:
    """The default settings: no image URL is fetched, and the 400 says how to allow it."""
    r = _chat(hearth_server, _parts("https://example.com/cat.png"), model=MODEL)
    assert r.status_code == 400
    assert "allow_remote_urls" in r.json()["error"]["message"]
