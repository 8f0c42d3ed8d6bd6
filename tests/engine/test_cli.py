"""`hearth` as a person types it: a real process, a real model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import __version__


def hearth(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_version() -> None:
    result = hearth("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hearth {__version__}"


def test_run_with_a_prompt_streams_a_reply() -> None:
    result = hearth("run", "smollm2:135m", "Say hello.", "--max-tokens", "16",
                    "--threads", "2", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_interactive_chat_keeps_history_and_bye_quits() -> None:
    result = hearth("run", "smollm2:135m", "--max-tokens", "12", "--threads", "2",
                    "--temperature", "0", "--verbose",
                    stdin="My name is Ada.\nWhat is my name?\n/bye\nnever read\n")
    assert result.returncode == 0, result.stderr
    stats = [line for line in result.stderr.splitlines() if "tok/s" in line]
    assert len(stats) == 2, result.stderr
    # The second turn reuses the first turn's cached prefix.
    cached, total = stats[1].split(" prompt tokens cached")[0].split(", ")[-1].split("/")
    assert 0 < int(cached) < int(total)


def test_run_accepts_a_path_to_a_gguf(smollm2_path: Path) -> None:
    result = hearth("run", str(smollm2_path), "Hi", "--max-tokens", "4", "--threads", "2")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("model", "expected"), [
    ("no-such-model", "No model named 'no-such-model'"),
    ("/nonexistent/file.gguf", "file.gguf is not there"),
])
def test_bad_model_names_say_what_to_do(model: str, expected: str) -> None:
    result = hearth("run", model, "hi")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_no_display_says_so_in_one_sentence() -> None:
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": ""}
    result = hearth(env=env)
    assert result.returncode == 0
    assert "No display" in result.stdout and "hearth run" in result.stdout
    assert result.stdout.count(".") <= 2 and len(result.stdout.strip().splitlines()) == 1
