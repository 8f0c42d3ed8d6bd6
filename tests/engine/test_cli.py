"""`hearth` as a person types it: a real process, a real model."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backend import __version__
from backend.api import ChatStore, Hearth, PresetBook, RequestOptions, SettingsStore
from backend.application import dispatch
from backend.application.requests import build_request
from backend.cli import main
from backend.engine.types import ChatMessage, LoadedModel


def hearth(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 180, entry: str = "backend.cli") -> subprocess.CompletedProcess[str]:
    """``entry``: app.launcher for what needs the whole entry point (the window, a server)."""
    return subprocess.run([sys.executable, "-m", entry, *args], input=stdin,
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
    result = hearth(env=env, entry="app.launcher")
    assert result.returncode == 0
    assert "No display" in result.stdout and "hearth run" in result.stdout
    assert result.stdout.count(".") <= 2 and len(result.stdout.strip().splitlines()) == 1


def test_run_resolves_the_request_as_the_api_would(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Saved settings < the preset < the flags given, by the one builder: no CLI defaults."""
    saved = SettingsStore.open()
    saved.update(sampling={"temperature": 1.5, "top_p": 0.5, "max_tokens": 6})
    PresetBook(saved).create("terse", "FROM smollm2:135m\nPARAMETER temperature 0.3\n"
                             "PARAMETER top_k 7\nPARAMETER num_ctx 768\nSYSTEM Be terse.\n")
    built: list[tuple[dict[str, Any], Any]] = []
    loaded: list[LoadedModel] = []

    def spy_build(**kwargs: Any) -> Any:
        request = build_request(**kwargs)
        built.append((kwargs, request))
        return request

    real_load = Hearth.load

    async def spy_load(self: Hearth, *args: Any, **kwargs: Any) -> LoadedModel:
        loaded.append(await real_load(self, *args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(dispatch, "build_request", spy_build)
    monkeypatch.setattr(Hearth, "load", spy_load)
    assert main(["run", "terse", "Hi", "--temperature", "0", "--threads", "2"]) == 0
    assert capsys.readouterr().out.strip()

    (kwargs, request), = built
    assert kwargs["options"] == RequestOptions(temperature=0.0)  # only the flag given
    expected = build_request(messages=(ChatMessage("user", "Hi"),),
                             options=RequestOptions(temperature=0.0),
                             settings=SettingsStore.open().snapshot(),
                             preset=PresetBook(saved).find("terse"))
    assert request == replace(expected, request_id=request.request_id)
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p) == (0.0, 7, 0.5)
    assert request.max_tokens == 6
    assert request.messages[0] == ChatMessage("system", "Be terse.")
    assert loaded[0].n_ctx == 768 and loaded[0].n_parallel == 1  # the preset's context


def test_interactive_chat_lands_in_the_history(hearth_home: Path) -> None:
    result = hearth("run", "smollm2:135m", "--max-tokens", "8", "--threads", "2",
                    "--temperature", "0", stdin="Hi\n/bye\n")
    assert result.returncode == 0, result.stderr
    store = ChatStore.open_default()  # the same HEARTH_HOME: the window's history
    try:
        conversation, = store.list_conversations()
        user, reply = store.messages(conversation.id)
    finally:
        store.close()
    assert conversation.title == "Hi" and conversation.model_id == "smollm2:135m"
    assert (user.role, user.content, user.state) == ("user", "Hi", "complete")
    assert reply.role == "assistant" and reply.state == "complete"
    assert reply.content.strip() and reply.content.strip() in result.stdout
    assert reply.stats and reply.stats["completion_tokens"] > 0


def test_a_one_shot_reply_is_not_saved(hearth_home: Path) -> None:
    result = hearth("run", "smollm2:135m", "Hi", "--max-tokens", "4", "--threads", "2")
    assert result.returncode == 0, result.stderr
    store = ChatStore.open_default()
    try:
        assert store.list_conversations() == []
    finally:
        store.close()


def test_a_reader_that_leaves_early_ends_quietly() -> None:
    """`hearth show MODEL --json | head -1`: no BrokenPipeError traceback, SIGPIPE's status."""
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "show", "smollm2:135m",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
