"""The Server page: switch the OpenAI/Ollama API on and off, its settings, snippets, live log.

Threading contract: every widget here lives on the GUI thread. Starting and stopping the
server wait for its port, so they run in a worker thread (``asyncio.to_thread``) inside a
qasync slot. The server's own thread reports through ``log_sink``/``state_sink``, which only
emit Qt signals; queued connections deliver them to this page on the GUI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.request_log import RequestLogModel
from backend.errors import BackendError
from backend.facade import Backend
from backend.server.context import RequestLogEntry
from backend.settings import ServerSettings

if TYPE_CHECKING:  # the server stack (uvicorn, FastAPI) loads only when the server starts
    from backend.server.service import ServerState

ERROR_COLOUR = "#c62828"
RESTART_NOTE = "Restart the server to apply the new API key or origins."
# Fields the running server read when it started (its bind and its security middleware);
# ``jit_loading`` and ``idle_ttl_minutes`` are read live, so they apply at once.
RESTART_FIELDS = ("api_key", "cors_origins")
_LABELS = {"host": "Host", "port": "Port", "api_key": "API key", "cors_origins": "CORS origins",
           "jit_loading": "JIT loading", "idle_ttl_minutes": "Idle TTL"}


@dataclass(frozen=True)
class ServerStatus:
    """What ``server_state_changed`` carries (for the main window's status bar)."""

    state: str  # a ServerState value: "stopped", "starting", "running", "stopping", "failed"
    url: str | None = None  # the OpenAI base URL while running
    error: str | None = None


# -- pure helpers ---------------------------------------------------------------------------
def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The ``ge``/``le`` bounds of a pydantic field: the spin boxes take them from the schema."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def display_root(host: str, port: int | None) -> str:
    """``http://HOST:PORT`` as a client on this machine reaches it (``port`` None: unknown)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port if port is not None else '<port>'}"


def curl_snippet(root: str, model: str, api_key: str | None) -> str:
    body = json.dumps({"model": model, "max_tokens": 128,
                       "messages": [{"role": "user", "content": "Say hello."}]})
    lines = [f"curl {shlex.quote(root + '/v1/chat/completions')}",
             '  -H "Content-Type: application/json"']
    if api_key:
        lines.append(f"  -H {shlex.quote('Authorization: Bearer ' + api_key)}")
    lines.append(f"  -d {shlex.quote(body)}")
    return " \\\n".join(lines) + "\n"


def openai_snippet(root: str, model: str, api_key: str | None) -> str:
    key = repr(api_key) if api_key else '"not-needed"  # any text: this server has no key set'
    return (f"from openai import OpenAI\n\n"
            f"client = OpenAI(base_url={root + '/v1'!r},\n"
            f"                api_key={key})\n"
            f"reply = client.chat.completions.create(\n"
            f"    model={model!r},\n"
            f"    messages=[{{\"role\": \"user\", \"content\": \"Say hello.\"}}],\n"
            f")\n"
            f"print(reply.choices[0].message.content)\n")


def ollama_snippet(root: str, model: str, api_key: str | None) -> str:
    headers = f",\n                headers={{'Authorization': {'Bearer ' + api_key!r}}}" \
        if api_key else ""
    return (f"from ollama import Client\n\n"
            f"client = Client(host={root!r}{headers})\n"
            f"reply = client.chat(model={model!r},\n"
            f"                    messages=[{{\"role\": \"user\", \"content\": \"Say hello.\"}}])\n"
            f"print(reply.message.content)\n")


SNIPPETS = (("curl", curl_snippet), ("Python (openai)", openai_snippet),
            ("Ollama client", ollama_snippet))


def _copy(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


class ServerPage(QWidget):
    server_state_changed = Signal(object)  # ServerStatus
    problem = Signal(str)  # a BackendError's sentence: refused exposure, port in use, crash
    # Private bridges from the server thread; emitted there, delivered queued here.
    _log_arrived = Signal(object)  # RequestLogEntry
    _state_arrived = Signal(str, object)  # ServerState, error or None

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._backend = backend
        self._busy: str | None = None  # "starting" / "stopping" while the toggle's slot runs
        self._failure: str | None = None  # why the last start was refused
        self._applied: ServerSettings | None = None  # what the running server started with
        self._last_status: ServerStatus | None = None
        self._save_wanted = False
        self._save_task: asyncio.Future[None] | None = None
        self.log_model = RequestLogModel(self)
        self._log_arrived.connect(self._add_log_entry, Qt.ConnectionType.QueuedConnection)
        self._state_arrived.connect(self._on_server_state, Qt.ConnectionType.QueuedConnection)
        self._build()
        self._load_fields()
        if self.running:  # switched on before this page existed (e.g. at app start)
            self._applied = self._settings.model_copy(deep=True)
        self._render()

    @property
    def _settings(self) -> ServerSettings:
        return self._backend.settings.server

    @property
    def running(self) -> bool:
        server = self._backend.server
        return server is not None and server.state == "running"

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

        self.url_edit = QLineEdit(self)
        self.url_edit.setReadOnly(True)
        self.copy_url_button = self._button("Copy", lambda: _copy(self.url_edit.text()))
        url_row = QHBoxLayout()
        url_row.addWidget(QLabel("Base URL", self))
        url_row.addWidget(self.url_edit, 1)
        url_row.addWidget(self.copy_url_button)

        column = QVBoxLayout(self)
        column.addLayout(top)
        column.addLayout(url_row)
        column.addWidget(self._build_settings())
        column.addWidget(self._build_snippets())
        column.addWidget(self._build_log(), 1)

    def _button(self, text: str, slot: Any) -> QPushButton:
        button = QPushButton(text, self)
        button.clicked.connect(slot)
        return button

    def _build_settings(self) -> QGroupBox:
        box = QGroupBox("Settings", self)
        form = QFormLayout(box)
        tips = {name: field.description for name, field in ServerSettings.model_fields.items()}

        self.host_edit = QLineEdit(box)
        self.host_edit.editingFinished.connect(
            lambda: self._change(host=self.host_edit.text().strip()))
        self.port_spin = QSpinBox(box)
        low, high = field_bounds(ServerSettings, "port")
        self.port_spin.setRange(int(low or 0), int(high or 65535))
        self.port_spin.setSpecialValueText("Any free port")  # shown for 0
        self.port_spin.setKeyboardTracking(False)  # one change per Enter, not per digit
        self.port_spin.valueChanged.connect(lambda v: self._change(port=v))

        self.key_edit = QLineEdit(box)
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("None: any client on this machine may call")
        self.key_edit.editingFinished.connect(
            lambda: self._change(api_key=self.key_edit.text().strip() or None))
        self.show_key_button = QPushButton("Show", box)
        self.show_key_button.setCheckable(True)
        self.show_key_button.toggled.connect(self._show_key)
        self.generate_key_button = self._button("Generate", self.generate_key)
        self.copy_key_button = self._button("Copy", lambda: _copy(self.key_edit.text()))
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        for button in (self.show_key_button, self.generate_key_button, self.copy_key_button):
            key_row.addWidget(button)

        self.cors_edit = QPlainTextEdit(box)
        self.cors_edit.setPlaceholderText("https://example.com (one origin per line)")
        self.cors_edit.setFixedHeight(self.fontMetrics().lineSpacing() * 4)
        self.cors_edit.setTabChangesFocus(True)
        self.cors_edit.textChanged.connect(self._cors_edited)

        self.jit_check = QCheckBox("Load a requested model on first use", box)
        self.jit_check.toggled.connect(lambda on: self._change(jit_loading=on))
        self.ttl_spin = QDoubleSpinBox(box)
        low, high = field_bounds(ServerSettings, "idle_ttl_minutes")
        self.ttl_spin.setRange(low or 0.0, high or 10080.0)
        self.ttl_spin.setDecimals(1)
        self.ttl_spin.setSuffix(" min")
        self.ttl_spin.setSpecialValueText("Never unload")
        self.ttl_spin.setKeyboardTracking(False)
        self.ttl_spin.valueChanged.connect(lambda v: self._change(idle_ttl_minutes=v))

        for label, widget, name in (("Host", self.host_edit, "host"),
                                    ("Port", self.port_spin, "port"),
                                    ("API key", key_row, "api_key"),
                                    ("CORS origins", self.cors_edit, "cors_origins"),
                                    ("JIT loading", self.jit_check, "jit_loading"),
                                    ("Idle TTL", self.ttl_spin, "idle_ttl_minutes")):
            form.addRow(label, widget)
            if isinstance(widget, QWidget):
                widget.setToolTip(tips[name] or "")
        self.key_edit.setToolTip(tips["api_key"] or "")

        self.settings_error = QLabel(box)  # invalid input: says what, nothing was saved
        self.settings_error.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.settings_error.setWordWrap(True)
        self.settings_error.hide()
        self.restart_note = QLabel(RESTART_NOTE, box)
        self.restart_note.hide()
        form.addRow(self.settings_error)
        form.addRow(self.restart_note)
        return box

    def _build_snippets(self) -> QTabWidget:
        self.snippet_tabs = QTabWidget(self)
        self.snippet_edits: dict[str, QPlainTextEdit] = {}
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for title, _make in SNIPPETS:
            page = QWidget(self.snippet_tabs)
            edit = QPlainTextEdit(page)
            edit.setReadOnly(True)
            edit.setFont(mono)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            edit.setFixedHeight(self.fontMetrics().lineSpacing() * 9)
            copy = QPushButton("Copy", page)
            copy.clicked.connect(lambda _=False, e=edit: _copy(e.toPlainText()))
            row = QHBoxLayout(page)
            row.addWidget(edit, 1)
            row.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
            self.snippet_tabs.addTab(page, title)
            self.snippet_edits[title] = edit
        return self.snippet_tabs

    def _build_log(self) -> QGroupBox:
        box = QGroupBox("Requests", self)
        self.log_view = QTableView(box)
        self.log_view.setModel(self.log_model)
        self.log_view.verticalHeader().hide()
        self.log_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.log_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.log_view.horizontalHeader()
        # Fixed widths, not ResizeToContents, which measures every row on each insert.
        for column, width in enumerate((80, 0, 160, 90, 60, 80)):
            if width:
                self.log_view.setColumnWidth(column, width)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._follow_log = True
        self.log_model.rowsAboutToBeInserted.connect(self._remember_follow)
        self.log_model.rowsInserted.connect(self._scroll_log)
        clear = QPushButton("Clear", box)
        clear.clicked.connect(self.log_model.clear)
        column = QVBoxLayout(box)
        column.addWidget(self.log_view, 1)
        column.addWidget(clear, 0, Qt.AlignmentFlag.AlignRight)
        return box

    # -- rendering -------------------------------------------------------------------------
    def _load_fields(self) -> None:
        """Show the stored settings without treating it as an edit."""
        cfg = self._settings
        widgets = (self.host_edit, self.port_spin, self.key_edit, self.cors_edit,
                   self.jit_check, self.ttl_spin)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.host_edit.setText(cfg.host)
            self.port_spin.setValue(cfg.port)
            self.key_edit.setText(cfg.api_key or "")
            self.cors_edit.setPlainText("\n".join(cfg.cors_origins))
            self.jit_check.setChecked(cfg.jit_loading)
            self.ttl_spin.setValue(cfg.idle_ttl_minutes)
        finally:
            for widget in widgets:
                widget.blockSignals(False)

    def _root_url(self) -> str:
        server = self._backend.server
        if self.running and server is not None:
            return server.base_url  # the real port, which port 0 only decides at bind time
        cfg = self._settings
        return display_root(cfg.host, cfg.port or None)

    def model_id(self) -> str:
        """The model snippets name: the loaded one, else the default, else the starter."""
        loaded = self._backend.loaded
        if loaded is not None:
            return loaded.model_id
        return self._backend.settings.default_model or self._backend.starter_model_id

    def _render(self) -> None:
        server = self._backend.server
        state: str = server.state if server is not None else "stopped"
        running = state == "running"
        error = server.error if server is not None else None
        if self._busy == "starting":
            text = "Starting…"
        elif self._busy == "stopping":
            text = "Stopping…"
        elif running:
            text = f"Running on {self._root_url()}/v1"
        elif state == "failed" or self._failure:
            text = f"Failed: {error or self._failure}"
        else:
            text = "Stopped"
        self.state_label.setText(text)
        failed = text.startswith("Failed")
        self.state_label.setStyleSheet(f"color: {ERROR_COLOUR};" if failed else "")

        self.toggle_button.setChecked(running)
        self.toggle_button.setText("Stop server" if running else "Start server")
        self.toggle_button.setEnabled(self._busy is None)
        # The bind address can't change under a running server: edit it while stopped.
        for widget, name in ((self.host_edit, "host"), (self.port_spin, "port")):
            widget.setEnabled(not running and self._busy is None)
            widget.setToolTip("Stop the server to change this." if running
                              else ServerSettings.model_fields[name].description)
        applied = self._applied if running else None
        self.restart_note.setVisible(applied is not None and any(
            getattr(applied, name) != getattr(self._settings, name) for name in RESTART_FIELDS))
        self.url_edit.setText(self._root_url() + "/v1")
        self._render_snippets()

        shown_state = self._busy or ("failed" if failed else state)
        status = ServerStatus(shown_state, self._root_url() + "/v1" if running else None,
                              error or (self._failure if not running else None))
        if status != self._last_status:
            self._last_status = status
            self.server_state_changed.emit(status)

    def _render_snippets(self) -> None:
        # While running, the key the server actually checks; otherwise the one it will use.
        key = (self._applied if self.running and self._applied else self._settings).api_key
        root, model = self._root_url(), self.model_id()
        for title, make in SNIPPETS:
            edit = self.snippet_edits[title]
            text = make(root, model, key)
            if edit.toPlainText() != text:
                edit.setPlainText(text)

    def snippet(self, title: str) -> str:
        return self.snippet_edits[title].toPlainText()

    # -- the toggle ------------------------------------------------------------------------
    @asyncSlot()
    async def toggle_server(self) -> None:
        if self._busy is not None:
            return
        start = not self.running
        self._busy = "starting" if start else "stopping"
        self._failure = None
        self._render()
        try:
            if start:
                await self._start()
            else:
                await asyncio.to_thread(self._backend.stop_server)
            # Remembered: the next launch starts the server again if it was left on.
            if self._settings.enabled != self.running:
                self._settings.enabled = self.running
                self._persist()
        finally:
            self._busy = None
            self._render()

    def start_if_enabled(self) -> None:
        """At launch: serve again if the server was on when Hearth last closed."""
        if self._settings.enabled and not self.running and self._busy is None:
            self.toggle_server()

    async def _start(self) -> None:
        applied = self._settings.model_copy(deep=True)
        try:
            await asyncio.to_thread(self._backend.start_server, self._log_from_server,
                                    self._state_from_server)
        except BackendError as exc:  # refused exposure, port in use, bad address
            self._failure = exc.user_message
            self.problem.emit(exc.user_message)
            return
        self._applied = applied

    # Server thread → GUI thread. These run on the server's (or the starting worker's) thread
    # and do nothing but emit; a page already deleted raises RuntimeError, which is dropped.
    def _log_from_server(self, entry: RequestLogEntry) -> None:
        with contextlib.suppress(RuntimeError):
            self._log_arrived.emit(entry)

    def _state_from_server(self, state: ServerState, error: str | None) -> None:
        with contextlib.suppress(RuntimeError):
            self._state_arrived.emit(str(state), error)

    @Slot(str, object)
    def _on_server_state(self, state: str, error: str | None) -> None:
        if state == "failed" and error:
            self.problem.emit(error)
        if self._busy is None:  # the toggle's slot renders its own outcome when it ends
            self._render()

    @Slot(object)
    def _add_log_entry(self, entry: RequestLogEntry) -> None:
        self.log_model.append([entry])
        self._render_snippets()  # a request may have JIT-loaded another model

    def _remember_follow(self, _parent: QModelIndex, _first: int, _last: int) -> None:
        bar = self.log_view.verticalScrollBar()
        self._follow_log = bar.value() >= bar.maximum() - 2  # don't yank someone reading

    def _scroll_log(self, _parent: QModelIndex, _first: int, _last: int) -> None:
        if self._follow_log:
            self.log_view.scrollToBottom()

    # -- settings --------------------------------------------------------------------------
    @Slot()
    def generate_key(self) -> None:
        key = secrets.token_urlsafe(32)
        if self._change(api_key=key):
            self.key_edit.setText(key)

    @Slot(bool)
    def _show_key(self, shown: bool) -> None:
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Normal if shown
                                  else QLineEdit.EchoMode.Password)
        self.show_key_button.setText("Hide" if shown else "Show")

    def _cors_edited(self) -> None:
        lines = self.cors_edit.toPlainText().splitlines()
        self._change(cors_origins=[line.strip() for line in lines if line.strip()])

    def _change(self, **changes: Any) -> bool:
        """Validate ``changes`` through the pydantic model; apply and persist, or explain."""
        cfg = self._settings
        if all(getattr(cfg, name) == value for name, value in changes.items()):
            self.settings_error.hide()  # e.g. an invalid edit put back to the stored value
            return True
        try:
            valid = ServerSettings.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            self.settings_error.setText(f"{_LABELS.get(name, name)}: {first['msg']}. "
                                        "Nothing was saved; correct it to save.")
            self.settings_error.show()
            return False
        for name in changes:  # in place: the running server reads this same object
            setattr(cfg, name, getattr(valid, name))
        self.settings_error.hide()
        self._persist()
        self._render()
        return True

    def _persist(self) -> None:
        """Write settings.json off the GUI thread (fsync); changes made meanwhile coalesce
        into one more write, so the file always ends with the latest values."""
        self._save_wanted = True
        if self._save_task is None or self._save_task.done():
            self._save_task = asyncio.ensure_future(self._save_pending())

    async def _save_pending(self) -> None:
        while self._save_wanted:
            self._save_wanted = False
            try:
                await asyncio.to_thread(self._backend.save_settings)
            except OSError as exc:
                self.settings_error.setText(f"Couldn't save the settings ({exc.strerror or exc})."
                                            " Check that Hearth's config folder is writable.")
                self.settings_error.show()

    @property
    def saving(self) -> bool:
        return self._save_task is not None and not self._save_task.done()
