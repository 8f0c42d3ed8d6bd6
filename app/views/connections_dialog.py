"""Remote connections: vLLM, TGI, Ollama, LM Studio, llama-server, another Hearth.

A dialog listing the connections with a form to add or replace one (a preset fills the usual
URL), test it (lists its models) and remove it. ``hearth.remote`` saves them (through the
settings store) and keeps keys in the keyring, never in settings.json; a test is
``hearth.test_connection``. Network calls never block the GUI thread (httpx async on the loop).
"""

from __future__ import annotations

from pydantic import ValidationError
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.style import mark_error
from backend.api import CONNECTION_KINDS, Hearth, RemoteConnection
from backend.errors import BackendError


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` per line; raises ValueError naming the bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"Header line {number} should look like 'Name: value'.")
        headers[name.strip()] = value.strip()
    return headers


class ConnectionsDialog(QDialog):
    connections_changed = Signal()

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connections_dialog")
        self.setWindowTitle("Remote connections")
        self._hearth = hearth
        self.list = QListWidget(self)
        self.list.setObjectName("connection_list")
        self.list.currentRowChanged.connect(self._show_selected)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(self.remove_selected)

        self.kind = QComboBox(self)
        for preset in CONNECTION_KINDS.values():
            self.kind.addItem(preset.label, preset.kind)
        self.kind.currentIndexChanged.connect(self._preset_chosen)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("e.g. cluster")
        self.url = QLineEdit(self)
        self.api_key = QLineEdit(self)
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("Empty if the server needs none (kept in the keyring)")
        self.headers = QPlainTextEdit(self)
        self.headers.setPlaceholderText("Extra headers, one 'Name: value' per line")
        self.headers.setFixedHeight(60)
        self.verify_tls = QCheckBox("Check the server's TLS certificate", self)
        self.verify_tls.setChecked(True)
        form = QFormLayout()
        form.addRow("Server", self.kind)
        form.addRow("Name", self.name)
        form.addRow("Base URL", self.url)
        form.addRow("API key", self.api_key)
        form.addRow("Headers", self.headers)
        form.addRow("", self.verify_tls)
        self.save_button = QPushButton("Save connection", self)
        self.save_button.clicked.connect(self.save)
        self.test_button = QPushButton("Test", self)
        self.test_button.clicked.connect(self.test)
        self.message = QLabel(self)
        self.message.setObjectName("connection_message")
        self.message.setWordWrap(True)
        actions = QHBoxLayout()
        actions.addWidget(self.test_button)
        actions.addStretch(1)
        actions.addWidget(self.save_button)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Chat with models on other servers: they appear in the model "
                                "picker as <connection>/<model>.", self))
        layout.addWidget(self.list)
        layout.addWidget(self.remove_button)
        layout.addLayout(form)
        layout.addLayout(actions)
        layout.addWidget(self.message)
        layout.addWidget(close)
        self.resize(560, 560)
        self._preset_chosen()
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for conn in self._hearth.remote.connections:
            self.list.addItem(f"{conn.name} · {conn.preset.label} · {conn.base_url}")
        self.remove_button.setEnabled(self.list.count() > 0)

    def _preset_chosen(self) -> None:
        preset = CONNECTION_KINDS[self.kind.currentData()]
        known = {p.base_url for p in CONNECTION_KINDS.values()}
        if not self.url.text() or self.url.text() in known:
            self.url.setText(preset.base_url)

    def _show_selected(self, row: int) -> None:
        connections = self._hearth.remote.connections
        if not 0 <= row < len(connections):
            return
        conn = connections[row]
        self.kind.setCurrentIndex(self.kind.findData(conn.kind))
        self.name.setText(conn.name)
        self.url.setText(conn.base_url)
        self.api_key.clear()
        self.api_key.setPlaceholderText("Unchanged (stored)" if conn.api_key_ref else
                                        "Empty if the server needs none")
        self.headers.setPlainText("\n".join(f"{k}: {v}" for k, v in conn.headers.items()))
        self.verify_tls.setChecked(conn.verify_tls)

    def _form_connection(self) -> RemoteConnection | None:
        try:
            existing = next((c for c in self._hearth.remote.connections
                             if c.name == self.name.text().strip()), None)
            return RemoteConnection(
                name=self.name.text().strip(), base_url=self.url.text().strip(),
                kind=self.kind.currentData(), headers=parse_headers(self.headers.toPlainText()),
                verify_tls=self.verify_tls.isChecked(),
                api_key_ref=existing.api_key_ref if existing and not self.api_key.text()
                else None)
        except ValidationError as exc:
            first = exc.errors()[0]
            self._say(f"{first['loc'][0] if first['loc'] else 'Connection'}: "
                      f"{first['msg'].removeprefix('Value error, ')}", error=True)
        except ValueError as exc:
            self._say(str(exc), error=True)
        return None

    def _say(self, text: str, *, error: bool = False) -> None:
        mark_error(self.message, error)
        self.message.setText(text)

    def save(self) -> bool:
        conn = self._form_connection()
        if conn is None:
            return False
        try:
            self._hearth.remote.add(conn, self.api_key.text().strip() or None)
        except BackendError as exc:
            self._say(exc.user_message, error=True)
            return False
        except OSError as exc:
            self._say(f"Hearth couldn't save the connection ({exc.strerror or exc}); check "
                      "that its config folder is writable.", error=True)
            return False
        self.api_key.clear()
        self.refresh()
        self._say(f"Saved {conn.name}. Its models are in the model picker.")
        self.connections_changed.emit()
        return True

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        connections = self._hearth.remote.connections
        if not 0 <= row < len(connections):
            return
        name = connections[row].name
        try:
            self._hearth.remote.remove(name)
        except BackendError as exc:
            self._say(exc.user_message, error=True)
            return
        except OSError as exc:
            self._say(f"Hearth couldn't save the change ({exc.strerror or exc}); check that "
                      "its config folder is writable.", error=True)
            return
        self.refresh()
        self._say(f"Removed {name}.")
        self.connections_changed.emit()

    @asyncSlot()
    async def test(self) -> None:
        """List the form's server's models without saving it."""
        conn = self._form_connection()
        if conn is None:
            return
        self.test_button.setEnabled(False)
        self._say(f"Asking {conn.base_url} for its models…")
        try:  # the typed key, else the stored one (when the form kept it)
            models = await self._hearth.test_connection(conn, self.api_key.text().strip() or None)
        except BackendError as exc:
            self._say(exc.user_message, error=True)
        else:
            shown = ", ".join(models[:5]) + ("…" if len(models) > 5 else "")
            self._say(f"Connected: {len(models)} model(s): {shown}")
        finally:
            self.test_button.setEnabled(True)
