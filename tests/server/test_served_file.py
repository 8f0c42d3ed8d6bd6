"""`hearth serve --model /path/x.gguf`: a file in no model folder is listed and answers by the
name it is listed under (clients that take the first listed model, as benchmarks and many
tools do, must get that file, not another model loaded in its place)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.server.conftest import start_hearth_server


def test_a_model_served_from_a_file_is_listed_first_and_answers(
        tmp_path: Path, smollm2_path: Path) -> None:
    file = tmp_path / "elsewhere" / "my-model.gguf"
    file.parent.mkdir()
    os.symlink(smollm2_path, file)
    server = start_hearth_server(tmp_path / "home", model=str(file))
    try:
        listed = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]
        assert listed[0]["id"] == "my-model"
        assert listed[0]["created"] > 1_000_000_000  # a date, like the others
        one = httpx.get(f"{server.url}/v1/models/my-model", timeout=10)
        assert one.status_code == 200
        reply = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "model": "my-model", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hi"}]}).json()
        assert reply["model"] == "my-model", reply
        status = httpx.get(f"{server.url}/api/ps", timeout=10).json()
        assert [m["name"] for m in status["models"]] == ["my-model"]  # nothing else loaded
    finally:
        server.stop()
