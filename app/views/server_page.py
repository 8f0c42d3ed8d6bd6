"""The Server page: switch the OpenAI/Ollama API on and off, its settings, snippets, live log.

The toggle calls ``hearth.server.start``/``stop``, which wait for the port, so they run in a
worker thread (``asyncio.to_thread``) inside a qasync slot. What the server reports arrives as
streams read on the GUI's loop: its state (``hearth.server.events``, the last one replayed to
a new reader), its request log (``hearth.request_log``), and loads (the snippets name the
loaded model, which an API client's JIT load may change).

Threading contract: every widget here lives on the GUI thread; nothing else touches them.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.streams import StreamReader
from app.style import mark_error
from app.views.request_log import RequestLogBox, RequestLogModel
from app.views.server_form import RESTART_FIELDS, ServerSettingsForm
from app.views.snippets import SnippetTabs, copy_text, display_root
from backend.api import Hearth, RequestLogEntry, ServerSettings, ServerState, ServerStatus
from backend.errors import BackendError

__all__ = ["ServerPage", "ServerStatus"]


def _root(url: str) -> str:
    """The server's root URL, whether it was given with its OpenAI ``/v1`` or not."""
    return url.rstrip("/").removesuffix("/v1")


def intro_text(root: str, running: bool) -> str:
    """What the server is for and what to give another app, in the words of the moment."""
    how = ("give it the Base URL below" if running
           else "start the server, then give it the Base URL below")
    return ("Lets other apps on this computer (code editors, chat front ends, scripts) use "
            f"Hearth's models: {how}, as an OpenAI-compatible API; an Ollama client takes "
            f"{root}.")


class ServerPage(QWidget):
    # What the page shows (for the status bar): ``url`` is the OpenAI base URL while running.
    server_state_changed = Signal(object)  # ServerStatus
    problem = Signal(str)  # a BackendError's sentence: refused exposure, port in use, crash

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._busy: str | None = None  # "starting" / "stopping" while the toggle's slot runs
        self._failure: str | None = None  # why the last start was refused
        self._reported: str | None = None  # the last sentence sent to the banner
        self._applied: ServerSettings | None = None  # what the running server started with
        self._last_status: ServerStatus | None = None
        self._seen = hearth.settings.snapshot()  # the settings as this page last showed them
        self._replayed = False  # the state stream's first value is the state it found
        self.log_model = RequestLogModel(self)
        self._build()
        if self.running:  # switched on before this page existed
            self._applied = self._seen.server
        self._render()
        self._streams = StreamReader(self)
        self._streams.read(hearth.server.events.stream, self._on_status)
        self._streams.read(hearth.request_log.stream, self._on_request)
        self._streams.read(hearth.load_events.stream, lambda _event: self._render_snippets())
        self._streams.read(hearth.settings.changes, lambda _snapshot: self._on_settings())

    @property
    def running(self) -> bool:
        return self._hearth.server.status.running

    def shutdown(self) -> None:
        """The window is closing: stop following the server (``Hearth.close`` stops it)."""
        self._streams.close()

    @property
    def saving(self) -> bool:
        """An edit is still waiting to be applied (origins being typed)."""
        return self.form.pending

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.toggle_button = QPushButton("Start server", self)
        self.toggle_button.setCheckable(True)
        self.toggle_button.setMinimumWidth(120)
        self.toggle_button.clicked.connect(self.toggle_server)
        self.state_label = QLabel("Stopped", self)
        self.state_label.setWordWrap(True)
        self.state_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.toggle_button)
        top.addWidget(self.state_label, 1)
        # What the page is for, and which address to hand over: "Stopped" alone left a
        # newcomer guessing what a server was, and which of the URLs their tool wanted.
        self.intro = QLabel(self)
        self.intro.setObjectName("server_intro")
        self.intro.setWordWrap(True)
        self.intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.url_edit = QLineEdit(self)
        self.url_edit.setReadOnly(True)
        self.url_edit.setAccessibleName("Base URL")
        self.copy_url_button = QPushButton("Copy", self)
        self.copy_url_button.clicked.connect(lambda: copy_text(self.url_edit.text()))
        url_row = QHBoxLayout()
        url_row.addWidget(QLabel("Base URL", self))
        url_row.addWidget(self.url_edit, 1)
        url_row.addWidget(self.copy_url_button)

        self.form = ServerSettingsForm(self._hearth.settings, self)
        self.form.changed.connect(self._edited)
        self.snippets = SnippetTabs(self)
        self.log_box = RequestLogBox(self.log_model, self)
        # The page scrolls rather than holding the window taller than a small screen.
        content = QWidget(self)
        content.setProperty("surface", "page")
        content.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        column = QVBoxLayout(content)
        column.addLayout(top)
        column.addWidget(self.intro)
        column.addLayout(url_row)
        column.addWidget(self.form)
        column.addWidget(self.snippets)
        column.addWidget(self.log_box, 1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no nameless, ringless Tab stop
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # -- rendering -------------------------------------------------------------------------
    def _root_url(self) -> str:
        status = self._hearth.server.status
        if status.running and status.url:
            return _root(status.url)  # the real port, which port 0 only decides at bind time
        cfg = self._hearth.settings.snapshot().server
        return display_root(cfg.host, cfg.port or None)

    def model_id(self) -> str:
        """The model snippets name: the loaded one, else the default, else the starter."""
        loaded = self._hearth.loaded
        if loaded is not None:
            return loaded.model_id
        return self._hearth.settings.snapshot().default_model or self._hearth.starter_model_id

    def _render(self) -> None:
        status = self._hearth.server.status
        running = status.running
        failure = self._failure or status.error
        if self._busy == "starting":
            text = "Starting…"
        elif self._busy == "stopping":
            text = "Stopping…"
        elif running:
            text = f"Running on {self._root_url()}/v1"
        elif status.state == ServerState.FAILED or self._failure:
            text = f"Failed: {failure}"
        else:
            text = "Stopped"
        self.state_label.setText(text)
        failed = text.startswith("Failed")
        mark_error(self.state_label, failed)

        self.toggle_button.setChecked(running)
        self.toggle_button.setText("Stop server" if running else "Start server")
        self.toggle_button.setEnabled(self._busy is None)
        self.form.set_bind_editable(not running and self._busy is None, running=running)
        current = self._hearth.settings.snapshot().server
        applied = self._applied if running else None
        self.form.restart_note.setVisible(applied is not None and any(
            getattr(applied, name) != getattr(current, name) for name in RESTART_FIELDS))
        self.url_edit.setText(self._root_url() + "/v1")
        self.intro.setText(intro_text(self._root_url(), running))
        self._render_snippets()

        shown_state = ServerState(self._busy or ("failed" if failed else status.state))
        shown = ServerStatus(shown_state, self._root_url() + "/v1" if running else None,
                             None if running else failure)
        if shown != self._last_status:
            self._last_status = shown
            self.server_state_changed.emit(shown)

    def _render_snippets(self) -> None:
        # While running, the key the server actually checks; otherwise the one it will use.
        current = self._hearth.settings.snapshot().server
        key = (self._applied if self.running and self._applied else current).api_key
        self.snippets.show_for(self._root_url(), self.model_id(), key)

    def snippet(self, title: str) -> str:
        return self.snippets.snippet(title)

    # -- the toggle ------------------------------------------------------------------------
    @asyncSlot()
    async def toggle_server(self) -> None:
        if self._busy is not None:
            return
        start = not self.running
        self._busy = "starting" if start else "stopping"
        self._failure = self._reported = None
        self._render()
        try:
            if start:
                await self._start()
            else:
                await asyncio.to_thread(self._hearth.server.stop)
            self._remember_enabled()
        finally:
            self._busy = None
            self._render()

    def start_if_enabled(self) -> None:
        """At launch: serve again if the server was on when Hearth last closed."""
        if self._hearth.settings.snapshot().server.enabled and not self.running \
                and self._busy is None:
            self.toggle_server()

    async def _start(self) -> None:
        self.form.flush()  # origins still being typed are part of what it starts with
        applied = self._hearth.settings.snapshot().server
        try:
            await asyncio.to_thread(self._hearth.server.start)
        except BackendError as exc:  # refused exposure, port in use, bad address
            self._failure = exc.user_message
            self._report(exc.user_message)
            return
        self._applied = applied

    def _remember_enabled(self) -> None:
        """The next launch starts the server again if it was left on."""
        if self._hearth.settings.snapshot().server.enabled == self.running:
            return
        try:
            self._seen = self._hearth.settings.update(server={"enabled": self.running})
        except BackendError as exc:
            self._report(exc.user_message)
        except OSError as exc:
            self._report(f"Hearth couldn't save the settings ({exc.strerror or exc}), so it "
                         "won't remember whether the server was on; check that its config "
                         "folder is writable.")

    def _report(self, sentence: str) -> None:
        if sentence != self._reported:  # the toggle and the state stream may both say it
            self._reported = sentence
            self.problem.emit(sentence)

    # -- what the server and the settings report --------------------------------------------
    def _on_status(self, status: ServerStatus) -> None:
        if status.state == ServerState.FAILED and status.error and self._replayed:
            self._report(status.error)
        self._replayed = True
        if self._busy is None:  # the toggle's slot renders its own outcome when it ends
            self._render()

    def _on_request(self, entry: RequestLogEntry) -> None:
        self.log_model.append([entry])

    def _edited(self) -> None:
        self._seen = self._hearth.settings.snapshot()
        self._render()

    def _on_settings(self) -> None:
        """Follow a change made elsewhere (this page's own edits are shown already)."""
        before, now = self._seen, self._hearth.settings.snapshot()
        self._seen = now
        if now.server != before.server:
            self.form.load(now.server)
        if now.server != before.server or now.default_model != before.default_model:
            self._render()
