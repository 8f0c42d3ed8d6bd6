"""The chat page's parts that need no model: the panel's values as request options, the
picker's rows for connections, and reading an event stream from a widget."""

from __future__ import annotations

import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.streams import StreamReader
from app.views.model_bar import REMOTE_ROLE, ModelBar
from app.views.reply_stream import panel_options
from backend.api import (
    NO_LIMIT,
    RANDOM_SEED,
    ChatSettings,
    EventHub,
    RemoteStatus,
    SamplingSettings,
    Settings,
)
from backend.errors import RemoteAuthFailed


def test_the_panel_values_are_explicit_options() -> None:
    settings = Settings(sampling=SamplingSettings(temperature=0.3, top_k=7, seed=None,
                                                  max_tokens=None),
                        chat=ChatSettings(system_prompt="  Be brief.  ", preset="p"))
    options = panel_options(settings, "req-1")
    assert (options.temperature, options.top_k, options.request_id) == (0.3, 7, "req-1")
    # Empty means random and no limit, overriding a preset's seed or num_predict.
    assert options.seed == RANDOM_SEED and options.max_tokens == NO_LIMIT
    assert options.system_prompt == "Be brief."
    fixed = panel_options(Settings(sampling=SamplingSettings(seed=5, max_tokens=64)), "r")
    assert (fixed.seed, fixed.max_tokens, fixed.system_prompt) == (5, 64, None)


def test_connection_rows_show_models_and_why_one_did_not_answer(qtbot: QtBot) -> None:
    bar = ModelBar()
    qtbot.addWidget(bar)
    bar.set_local(["local:1b"], "local:1b")
    bar.set_remote([RemoteStatus("lab", ("a", "b")),
                    RemoteStatus("home", error=RemoteAuthFailed("The API key was refused."))],
                   None)
    picker = bar.picker
    assert bar.remote_ids == {"lab/a", "lab/b"}
    assert picker.itemText(picker.findData("lab/a")) == "lab/a  (lab)"
    down = picker.findText("home: unavailable")
    assert picker.itemData(down, Qt.ItemDataRole.ToolTipRole) == "The API key was refused."
    assert not picker.model().item(down).isEnabled()  # type: ignore[attr-defined]
    assert picker.currentData() == "local:1b"

    bar.set_remote([RemoteStatus("lab", ("c",))], "lab/c")  # the next answer replaces rows
    remote_rows = [picker.itemData(i) for i in range(picker.count())
                   if picker.itemData(i, REMOTE_ROLE)]
    assert remote_rows == [None, "lab/c"]  # the separator, then the one model
    assert picker.currentData() == "lab/c" and picker.findText("home: unavailable") < 0


def test_a_stream_is_read_until_its_reader_closes(qtbot: QtBot,
                                                  qasync_loop: qasync.QEventLoop) -> None:
    hub: EventHub[int] = EventHub()
    owner = QWidget()
    qtbot.addWidget(owner)
    seen: list[int] = []
    reader = StreamReader(owner)
    reader.read(hub.stream, seen.append)
    qtbot.wait(10)  # the task subscribes on its first turn
    hub.publish(1)
    hub.publish(2)
    qtbot.waitUntil(lambda: seen == [1, 2])
    reader.close()
    qtbot.waitUntil(lambda: not hub._listeners)  # the stream closed: the hub forgot it
    hub.publish(3)
    qtbot.wait(20)
    assert seen == [1, 2]
