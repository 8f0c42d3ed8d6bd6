"""The Server page's settings: bind address, API key, CORS origins, JIT loading, idle TTL.

Editors over ``ServerSettings``'s fields, with bounds and tooltips from the schema. A finished
edit is validated against the model first (an invalid one says what, and nothing changes),
then is one ``hearth.settings.update(server=…)``: saved, and read by the running server where
it reads settings live (JIT loading, idle TTL). The CORS box, edited a keystroke at a time, is
applied 300 ms after the last one, or at once by ``flush``.

GUI thread only.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.style import mark_error
from app.views.snippets import copy_text
from backend.api import ServerSettings, SettingsStore
from backend.errors import BackendError

RESTART_NOTE = "Restart the server to apply the new API key or origins."
# Fields the running server read when it started (its bind and its security middleware);
# ``jit_loading`` and ``idle_ttl_minutes`` are read live, so they apply at once.
RESTART_FIELDS = ("api_key", "cors_origins")
TYPING_DELAY_MS = 300
_LABELS = {"host": "Host", "port": "Port", "api_key": "API key", "cors_origins": "CORS origins",
           "jit_loading": "JIT loading", "idle_ttl_minutes": "Idle TTL"}


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The ``ge``/``le`` bounds of a pydantic field: the spin boxes take them from the schema."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


class ServerSettingsForm(QGroupBox):
    changed = Signal()  # an edit was saved

    def __init__(self, store: SettingsStore, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self._store = store
        self._cors_timer = QTimer(self, singleShot=True, interval=TYPING_DELAY_MS)
        self._cors_timer.timeout.connect(self._apply_origins)
        form = QFormLayout(self)
        tips = {name: field.description for name, field in ServerSettings.model_fields.items()}

        self.host_edit = QLineEdit(self)
        self.host_edit.editingFinished.connect(
            lambda: self._change(host=self.host_edit.text().strip()))
        self.port_spin = QSpinBox(self)
        low, high = field_bounds(ServerSettings, "port")
        self.port_spin.setRange(int(low or 0), int(high or 65535))
        self.port_spin.setSpecialValueText("Any free port")  # shown for 0
        self.port_spin.setKeyboardTracking(False)  # one change per Enter, not per digit
        self.port_spin.valueChanged.connect(lambda v: self._change(port=v))

        self.key_edit = QLineEdit(self)
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("None: any client on this machine may call")
        self.key_edit.editingFinished.connect(
            lambda: self._change(api_key=self.key_edit.text().strip() or None))
        self.show_key_button = QPushButton("Show", self)
        self.show_key_button.setCheckable(True)
        self.show_key_button.toggled.connect(self._show_key)
        self.generate_key_button = QPushButton("Generate", self)
        self.generate_key_button.clicked.connect(self.generate_key)
        self.copy_key_button = QPushButton("Copy", self)
        self.copy_key_button.clicked.connect(lambda: copy_text(self.key_edit.text()))
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        for button in (self.show_key_button, self.generate_key_button, self.copy_key_button):
            key_row.addWidget(button)

        self.cors_edit = QPlainTextEdit(self)
        self.cors_edit.setPlaceholderText("https://example.com (one origin per line)")
        self.cors_edit.setFixedHeight(self.fontMetrics().lineSpacing() * 4)
        self.cors_edit.setTabChangesFocus(True)
        self.cors_edit.textChanged.connect(self._cors_timer.start)

        self.jit_check = QCheckBox("Load a requested model on first use", self)
        self.jit_check.toggled.connect(lambda on: self._change(jit_loading=on))
        self.ttl_spin = QDoubleSpinBox(self)
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

        self.settings_error = QLabel(self)  # invalid input: says what, nothing was saved
        mark_error(self.settings_error)
        self.settings_error.setWordWrap(True)
        self.settings_error.hide()
        self.restart_note = QLabel(RESTART_NOTE, self)
        self.restart_note.hide()
        form.addRow(self.settings_error)
        form.addRow(self.restart_note)
        self.load(store.snapshot().server)

    @property
    def pending(self) -> bool:
        """CORS origins typed and not applied yet."""
        return self._cors_timer.isActive()

    def load(self, cfg: ServerSettings) -> None:
        """Show ``cfg`` without treating it as an edit (origins being typed stay)."""
        widgets = (self.host_edit, self.port_spin, self.key_edit, self.cors_edit,
                   self.jit_check, self.ttl_spin)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.host_edit.setText(cfg.host)
            self.port_spin.setValue(cfg.port)
            self.key_edit.setText(cfg.api_key or "")
            if not self.pending and _origins(self.cors_edit.toPlainText()) != cfg.cors_origins:
                self.cors_edit.setPlainText("\n".join(cfg.cors_origins))
            self.jit_check.setChecked(cfg.jit_loading)
            self.ttl_spin.setValue(cfg.idle_ttl_minutes)
        finally:
            for widget in widgets:
                widget.blockSignals(False)

    def set_bind_editable(self, editable: bool, *, running: bool) -> None:
        """The bind address can't change under a running server: edit it while stopped."""
        for widget, name in ((self.host_edit, "host"), (self.port_spin, "port")):
            widget.setEnabled(editable)
            widget.setToolTip("Stop the server to change this." if running
                              else ServerSettings.model_fields[name].description)

    def flush(self) -> None:
        """Apply origins still being typed now (the server is about to start)."""
        if self._cors_timer.isActive():
            self._cors_timer.stop()
            self._apply_origins()

    def _apply_origins(self) -> None:
        self._change(cors_origins=_origins(self.cors_edit.toPlainText()))

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

    def _change(self, **changes: Any) -> bool:
        """Validate ``changes`` through the pydantic model; save them, or explain."""
        cfg = self._store.snapshot().server
        if all(getattr(cfg, name) == value for name, value in changes.items()):
            self.settings_error.hide()  # e.g. an invalid edit put back to the stored value
            return True
        try:
            ServerSettings.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            self._say(f"{_LABELS.get(name, name)}: {first['msg']}. Nothing was saved; correct "
                      "it to save.")
            return False
        try:
            self._store.update(server=changes)
        except BackendError as exc:
            self._say(exc.user_message)
            return False
        except OSError as exc:
            self._say(f"Couldn't save the settings ({exc.strerror or exc}). Check that "
                      "Hearth's config folder is writable.")
            return False
        self.settings_error.hide()
        self.changed.emit()
        return True

    def _say(self, text: str) -> None:
        self.settings_error.setText(text)
        self.settings_error.show()


def _origins(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())
