"""The Server page driven like a person would: real engine, real server, real clients."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit
from pytestqt.qtbot import QtBot

from app.launcher import http_server
from app.views.request_log import RequestLogModel, format_cell
from app.views.server_page import ServerPage, ServerStatus
from backend.api import (
    EngineSettings,
    Hearth,
    RequestLogEntry,
    ServerSettings,
    Settings,
    SettingsStore,
)
from backend.settings import settings_path

MODEL = "smollm2:135m"
REPLY_TIMEOUT_MS = 120_000



@pytest.fixture
def hearth() -> Iterator[Hearth]:
    # Small context, one slot, two threads: the JIT load and a reply stay cheap on shared CPUs.
    hearth = Hearth(SettingsStore(Settings(server=ServerSettings(port=0),
                                           engine=EngineSettings(n_ctx=1024, parallel=1,
                                                                 threads=2))),
                    server=http_server)
    yield hearth
    hearth.close()


def _port(hearth: Hearth) -> int:
    """The port the running server listens on (port 0 was given: the OS picked one)."""
    url = hearth.server.status.url
    assert url is not None
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
def page(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> ServerPage:
    page = ServerPage(hearth)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    return page


def _entry(status: int = 200, route: str = "/v1/chat/completions") -> RequestLogEntry:
    return RequestLogEntry(time.time(), "POST", route, MODEL, status, 12, 8, 0.25)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _stored() -> dict:
    return json.loads(settings_path().read_text(encoding="utf-8"))["server"]


def _wait_saved(qtbot: QtBot, page: ServerPage) -> None:
    qtbot.waitUntil(lambda: not page.saving and settings_path().exists())


def _settled_running(page: ServerPage) -> bool:
    """Running, and the toggle's slot has finished: the server reports "running" before the
    slot that started it returns, and until then the (disabled) button ignores a click."""
    return page.running and page.toggle_button.isEnabled()


def _edit(qtbot: QtBot, line: QLineEdit, text: str) -> None:
    line.clear()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)  # editingFinished: one save per edit


# -- the log model ---------------------------------------------------------------------------
def test_log_model_is_a_sound_capped_table(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = RequestLogModel(max_rows=5)
    qtmodeltester.check(model)
    model.append([_entry(), _entry(404, "/api/chat")])
    qtmodeltester.check(model)
    assert model.rowCount() == 2 and model.columnCount() == 6
    row = [model.index(1, c).data() for c in range(6)]
    assert row[1:5] == ["POST /api/chat", MODEL, "12 → 8", "404"] and row[5] == "250 ms"
    assert model.index(1, 0).data(Qt.ItemDataRole.ForegroundRole) is not None  # an error
    assert model.index(0, 0).data(Qt.ItemDataRole.ForegroundRole) is None

    model.append([_entry(200 + i) for i in range(7)])  # past the cap: the oldest go first
    assert [e.status for e in model.entries] == [202, 203, 204, 205, 206]
    qtmodeltester.check(model)
    model.clear()
    assert model.rowCount() == 0
    assert format_cell(RequestLogEntry(0, "GET", "/v1/models", None, 200, duration_s=2.5),
                       5) == "2.50 s"


# -- start, serve, log, stop -----------------------------------------------------------------
@pytest.mark.slow
def test_toggle_serves_openai_clients_and_logs_them(qtbot: QtBot, page: ServerPage,
                                                    hearth: Hearth) -> None:
    statuses: list[ServerStatus] = []
    page.server_state_changed.connect(statuses.append)
    qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state_label.text().startswith("Running on"), timeout=30_000)
    port = _port(hearth)
    assert port != 0
    url = f"http://127.0.0.1:{port}/v1"
    assert page.url_edit.text() == url and url in page.state_label.text()
    assert page.toggle_button.isChecked() and page.toggle_button.text() == "Stop server"
    assert not page.form.host_edit.isEnabled() and not page.form.port_spin.isEnabled()
    assert statuses[-1] == ServerStatus("running", url)
    assert url in page.snippet("curl") and f"base_url='{url}'" in page.snippet(
        "Python (openai)") and f"host='http://127.0.0.1:{port}'" in page.snippet(
        "Ollama client")

    def ask() -> str:
        from openai import OpenAI

        client = OpenAI(base_url=url, api_key="not-needed", timeout=120)
        reply = client.chat.completions.create(
            model=MODEL, max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": "Say hi."}])
        return reply.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(ask)
        qtbot.waitUntil(answer.done, timeout=REPLY_TIMEOUT_MS)  # Qt keeps spinning meanwhile
    assert answer.result().strip()
    qtbot.waitUntil(lambda: page.log_model.rowCount() >= 1)
    entry = page.log_model.entries[-1]
    assert (entry.route, entry.model, entry.status) == ("/v1/chat/completions", MODEL, 200)
    assert 0 < entry.completion_tokens <= 8
    assert MODEL in page.snippet("curl")

    # A new key while running applies at the next start; the page says so.
    assert not page.form.restart_note.isVisible()
    qtbot.mouseClick(page.form.generate_key_button, Qt.MouseButton.LeftButton)
    assert page.form.restart_note.isVisible()
    assert "Authorization" not in page.snippet("curl")  # the running server still has none

    qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state_label.text() == "Stopped", timeout=30_000)
    assert not page.toggle_button.isChecked() and page.form.host_edit.isEnabled()
    assert statuses[-1].state == "stopped"
    assert _refused(port)
    assert page.form.settings_error.isHidden()


# -- refusals --------------------------------------------------------------------------------
def test_exposed_host_without_key_is_refused(qtbot: QtBot, page: ServerPage) -> None:
    statuses: list[ServerStatus] = []
    page.server_state_changed.connect(statuses.append)
    port = _free_port()
    _edit(qtbot, page.form.host_edit, "0.0.0.0")
    page.form.port_spin.setValue(port)
    with qtbot.waitSignal(page.problem, timeout=30_000) as problem:
        qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    sentence = problem.args[0]
    assert sentence.startswith("Refusing to serve on 0.0.0.0") and "API key" in sentence
    qtbot.waitUntil(lambda: page.toggle_button.isEnabled())
    assert page.state_label.text() == f"Failed: {sentence}"
    assert not page.toggle_button.isChecked() and not page.running
    assert [s.state for s in statuses] == ["starting", "failed"]
    assert statuses[-1].error == sentence
    assert _refused(port)


def test_port_in_use_shows_its_sentence(qtbot: QtBot, page: ServerPage) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        page.form.port_spin.setValue(port)
        with qtbot.waitSignal(page.problem, timeout=30_000) as problem:
            qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    assert f"Port {port} on 127.0.0.1 is already in use" in problem.args[0]
    qtbot.waitUntil(lambda: page.toggle_button.isEnabled())
    assert page.state_label.text().startswith("Failed: Port")
    assert not page.running


# -- settings --------------------------------------------------------------------------------
def test_settings_changes_persist_and_invalid_ones_do_not(qtbot: QtBot,
                                                          page: ServerPage) -> None:
    form = page.form
    _edit(qtbot, form.host_edit, "localhost")
    form.port_spin.setValue(23456)
    form.cors_edit.setPlainText("https://a.example\n\n  https://b.example  \n")
    form.jit_check.setChecked(False)
    form.ttl_spin.setValue(5.5)
    _wait_saved(qtbot, page)
    stored = _stored()
    assert stored["host"] == "localhost" and stored["port"] == 23456
    assert stored["cors_origins"] == ["https://a.example", "https://b.example"]
    assert stored["jit_loading"] is False and stored["idle_ttl_minutes"] == 5.5
    assert form.settings_error.isHidden()
    assert form.port_spin.maximum() == 65535  # from the pydantic Field's bounds

    _edit(qtbot, form.host_edit, "   ")  # an empty address: pydantic refuses it
    assert form.settings_error.isVisible() and "Host" in form.settings_error.text()
    _wait_saved(qtbot, page)
    assert _stored()["host"] == "localhost"
    assert page.url_edit.text() == "http://localhost:23456/v1"
    _edit(qtbot, form.host_edit, "localhost")  # put back: the message goes away
    assert form.settings_error.isHidden()


def test_generate_key_persists_and_fills_the_snippets(qtbot: QtBot, page: ServerPage) -> None:
    form = page.form
    assert '"not-needed"' in page.snippet("Python (openai)")
    assert "Authorization" not in page.snippet("curl")
    qtbot.mouseClick(form.generate_key_button, Qt.MouseButton.LeftButton)
    key = form.key_edit.text()
    assert len(key) >= 40
    assert form.key_edit.echoMode() == QLineEdit.EchoMode.Password
    qtbot.mouseClick(form.show_key_button, Qt.MouseButton.LeftButton)
    assert form.key_edit.echoMode() == QLineEdit.EchoMode.Normal
    assert f"Authorization: Bearer {key}" in page.snippet("curl")
    assert f"api_key={key!r}" in page.snippet("Python (openai)")
    assert f"'Bearer {key}'" in page.snippet("Ollama client")
    _wait_saved(qtbot, page)
    assert _stored()["api_key"] == key

    qtbot.mouseClick(form.copy_key_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == key


def test_a_server_left_on_starts_again_at_the_next_launch(qtbot: QtBot, page: ServerPage,
                                                          hearth: Hearth) -> None:
    page.toggle_button.click()
    qtbot.waitUntil(lambda: _settled_running(page), timeout=30_000)
    _wait_saved(qtbot, page)
    assert _stored()["enabled"] is True
    port = _port(hearth)

    # "Next launch": a new Hearth and page reading the saved settings.
    hearth.server.stop()
    qtbot.waitUntil(lambda: not page.running)
    later = Hearth(SettingsStore.open(), server=http_server)
    try:
        again = ServerPage(later)
        qtbot.addWidget(again)
        again.start_if_enabled()
        qtbot.waitUntil(lambda: _settled_running(again), timeout=30_000)
        assert _port(later) > 0
        again.toggle_button.click()  # off, and remembered as off
        qtbot.waitUntil(lambda: not again.running and _stored()["enabled"] is False,
                        timeout=30_000)
    finally:
        later.close()
    assert port > 0
