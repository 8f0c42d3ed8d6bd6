"""One request builder for every front end: the same preset, saved settings and one explicit
option give the same engine request through the window, `hearth run` (local and --url), the
OpenAI routes, the Ollama routes and a chat through a remote connection.

Each front end is driven as its user drives it (a message typed in the window, a command
line, an HTTP request); the application layer's dispatcher is spied on where it hands the
resolved request to an engine, and answers with a canned reply instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import qasync
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from backend.api import Hearth, LoadedModel, RemoteConnection, SettingsStore
from backend.application import dispatch
from backend.application.generation import Generation
from backend.engine.types import Finished, GenerationEvent, GenerationRequest, TextDelta, Usage

MODELFILE = '''FROM smollm2:135m
PARAMETER temperature 0.2
PARAMETER top_p 0.5
PARAMETER num_predict 64
PARAMETER stop END
SYSTEM Be brief.
TEMPLATE """{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""
MESSAGE user Seeded?
MESSAGE assistant Yes.
'''
SAVED = {"sampling": {"temperature": 0.5, "top_k": 20, "seed": 7, "max_tokens": 300},
         "engine": {"overflow": "rolling_window"}}
EXPLICIT_TEMPERATURE = 0.3  # the one explicit option, given the way each front end takes it


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[GenerationRequest]:
    """Requests as the dispatcher hands them to an engine, local or remote."""
    seen: list[GenerationRequest] = []

    async def canned(request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(request.request_id, "ok")
        yield Finished(request.request_id, "stop", Usage(1, 0, 1, 0.01, 10.0))

    async def local(self: Any, model: str, request: GenerationRequest, load_if_needed: bool,
                    release: Callable[[], None] | None) -> Generation:
        seen.append(request)
        stream = canned(request)
        return Generation(request, model, stream, await anext(stream), release)

    def remote(self: Any, model: Any, request: GenerationRequest
               ) -> AsyncIterator[GenerationEvent]:
        seen.append(request)
        return canned(request)

    monkeypatch.setattr(dispatch.Dispatcher, "_local", local)
    monkeypatch.setattr(dispatch.Dispatcher, "_remote_stream", remote)
    return seen


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    store = SettingsStore.open()
    store.update(**SAVED)
    hearth = Hearth(store)
    hearth.presets.create("brief", MODELFILE)
    yield hearth
    hearth.close()


def _openai(hearth: Hearth) -> None:
    _http(hearth, "/v1/chat/completions", {
        "model": "brief", "temperature": EXPLICIT_TEMPERATURE,
        "messages": [{"role": "user", "content": "Hi"}]})


def _ollama(hearth: Hearth) -> None:
    _http(hearth, "/api/chat", {
        "model": "brief", "stream": False, "options": {"temperature": EXPLICIT_TEMPERATURE},
        "messages": [{"role": "user", "content": "Hi"}]})


def _http(hearth: Hearth, path: str, body: dict[str, Any]) -> None:
    from backend.server.app import create_app

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(hearth))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.post(path, json=body)

    response = asyncio.run(post())
    assert response.status_code == 200, response.text


def _cli(*extra: str) -> Callable[[Hearth], None]:
    def run(hearth: Hearth, monkeypatch: pytest.MonkeyPatch) -> None:
        from backend.cli import main

        async def no_load(self: Hearth, model: Any, plan: Any = None) -> LoadedModel:
            # The canned reply needs no model: a load would only cost time.
            return LoadedModel("smollm2:135m", "smollm2.gguf", 2048, 1, 8192, 30, 0, 2, "gguf")

        args = ["run", *extra, "--temperature", str(EXPLICIT_TEMPERATURE), "brief", "Hi"]
        with monkeypatch.context() as patch:
            patch.setattr(Hearth, "load", no_load)
            assert main(args) == 0

    return run  # type: ignore[return-value]


def _window(remote: bool) -> Callable[..., None]:
    def run(hearth: Hearth, qtbot: QtBot) -> None:
        from app.main_window import MainWindow

        preset = hearth.presets.find("brief")
        assert preset is not None
        hearth.presets.apply(preset)  # "Load" in the parameter panel...
        hearth.settings.update(sampling={"temperature": EXPLICIT_TEMPERATURE})  # ...one edit
        window = MainWindow(hearth)
        qtbot.addWidget(window)
        window.show()
        chat = window.chat
        if remote:
            hearth.remote.add(RemoteConnection(name="lab", base_url="http://127.0.0.1:9/v1"))
            chat.chooser.remote_model = "lab/brief"
        else:  # picked in the window, as a person loads it
            window.load_model("smollm2:135m")
            qtbot.waitUntil(lambda: hearth.loaded is not None and not chat.loading,
                            timeout=60_000)
        qtbot.keyClicks(chat.composer, "Hi")
        qtbot.waitUntil(chat.send_button.isEnabled, timeout=30_000)
        with qtbot.waitSignal(chat.reply_finished, timeout=60_000):
            qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
        window.close()

    return run


def _off_the_window_loop(run: Callable[[], None]) -> None:
    """The CLI and the HTTP client run their own asyncio loops: on a thread of their own,
    since this test's qasync loop counts as running on this one."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    if failure:
        raise failure[0]


def _resolved(request: GenerationRequest) -> dict[str, Any]:
    return {"sampling": request.sampling, "stop": request.stop, "max_tokens":
            request.max_tokens, "overflow": request.overflow, "template": request.chat_template,
            "messages": request.messages, "grammar": request.grammar, "tools": request.tools}


FRONT_ENDS = ["openai", "ollama", "hearth run", "hearth run --url", "window",
              "window, remote connection"]


@pytest.mark.slow
def test_every_front_end_resolves_the_same_request(
        hearth: Hearth, captured: list[GenerationRequest], monkeypatch: pytest.MonkeyPatch,
        qtbot: QtBot, qasync_loop: qasync.QEventLoop) -> None:
    for name in FRONT_ENDS:
        before = len(captured)
        if name == "openai":
            _off_the_window_loop(lambda: _openai(hearth))
        elif name == "ollama":
            _off_the_window_loop(lambda: _ollama(hearth))
        elif name == "hearth run":
            _off_the_window_loop(lambda: _cli()(hearth, monkeypatch))
        elif name == "hearth run --url":
            _off_the_window_loop(lambda: _cli("--url", "http://127.0.0.1:9/v1")(
                hearth, monkeypatch))
        else:
            _window(remote="remote" in name)(hearth, qtbot)
        assert len(captured) == before + 1, name
    first = _resolved(captured[0])
    s = captured[0].sampling
    assert (s.temperature, s.top_p, s.top_k, s.seed) == (EXPLICIT_TEMPERATURE, 0.5, 20, 7)
    assert (first["max_tokens"], first["stop"], first["overflow"]) == (64, ("END",),
                                                                       "rolling_window")
    assert [m.content for m in first["messages"]] == ["Be brief.", "Seeded?", "Yes.", "Hi"]
    assert first["template"] and "im_start" in first["template"]
    for name, request in zip(FRONT_ENDS, captured, strict=True):
        assert _resolved(request) == first, name
