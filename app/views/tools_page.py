"""The MCP servers whose tools chats may call: add one, import an mcp.json, enable or disable
it, see its state (connected with N tools, or why not), restart it, and turn single tools off.

A stdio server runs a program with the person's rights, so before its first start its exact
command line is shown in a confirmation box (``confirm_box``); only a "Yes" there confirms it
(``ToolRegistry.confirm``), and a server added or imported here is unconfirmed until then.
Secret values (env, headers) go to the keyring through the registry, never to settings.json.

Threading contract: GUI thread; a start is a task on the window's loop awaiting the MCP loop.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backend.api import Hearth, ImportedServer, McpServer, McpStatus, make_server, parse_mcp_json
from backend.errors import BackendError


def status_text(status: McpStatus) -> str:
    """A server's state in a few words, as the list shows it."""
    if status.state == "connected":
        count = status.tool_count
        return f"connected, {count} tool{'s' if count != 1 else ''}"
    if status.state == "unconfirmed":
        return "not started yet: confirm its command (Start)"
    return status.state + (f": {status.error}" if status.error and status.state == "failed"
                           else "")


def parse_target(name: str, target: str) -> ImportedServer:
    """What the Add form says: a URL reaches a server, anything else is a command line."""
    target = target.strip()
    if target.startswith(("http://", "https://")):
        return make_server(name, url=target)
    words = shlex.split(target)
    if not words:
        raise ValueError("Type the command that starts the server, or its http(s) URL.")
    return make_server(name, command=words[0], args=tuple(words[1:]))


class McpServersDialog(QDialog):
    servers_changed = Signal()
    problem = Signal(str)

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("MCP servers")
        self.resize(640, 480)
        self._tools = hearth.tools
        self.confirm_box: QMessageBox | None = None
        self._task: asyncio.Future[None] | None = None  # the start being awaited

        self.servers = QListWidget(self)
        self.servers.setAccessibleName("MCP servers")
        self.tools = QListWidget(self)
        self.tools.setAccessibleName("Tools")
        self.error = QLabel(self)
        self.error.setObjectName("mcp_error")
        self.error.setWordWrap(True)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("notes")
        self.target = QLineEdit(self)
        self.target.setPlaceholderText("uvx notes-mcp   or   http://127.0.0.1:8000/mcp")
        self.add_button = QPushButton("Add", self)
        self.import_button = QPushButton("Import mcp.json…", self)
        self.toggle_button = QPushButton("Disable", self)
        self.start_button = QPushButton("Start", self)
        self.restart_button = QPushButton("Restart", self)
        self.remove_button = QPushButton("Remove", self)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Command or URL", self.target)
        adding = QHBoxLayout()
        adding.addWidget(self.add_button)
        adding.addWidget(self.import_button)
        adding.addStretch(1)
        actions = QHBoxLayout()
        for button in (self.toggle_button, self.start_button, self.restart_button,
                       self.remove_button):
            actions.addWidget(button)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.servers, 2)
        layout.addLayout(actions)
        layout.addWidget(QLabel("Its tools (untick to stop offering one):", self))
        layout.addWidget(self.tools, 2)
        layout.addWidget(self.error)
        layout.addLayout(form)
        layout.addLayout(adding)

        self.add_button.clicked.connect(self.add)
        self.import_button.clicked.connect(self.choose_import)
        self.toggle_button.clicked.connect(self.toggle)
        self.start_button.clicked.connect(self.start)
        self.restart_button.clicked.connect(self.restart)
        self.remove_button.clicked.connect(self.remove)
        self.servers.currentRowChanged.connect(lambda _row: self._show_tools())
        self.tools.itemChanged.connect(self._tool_toggled)
        self.refresh()

    # -- showing ---------------------------------------------------------------------------
    def selected(self) -> McpServer | None:
        item = self.servers.currentItem()
        if item is None:
            return None
        name = item.data(Qt.ItemDataRole.UserRole)
        return next((s for s in self._tools.servers() if s.name == name), None)

    def refresh(self, select: str | None = None) -> None:
        current = select or (self.selected().name if self.selected() else None)
        self.servers.blockSignals(True)
        self.servers.clear()
        for server, status in zip(self._tools.servers(), self._tools.statuses(), strict=True):
            item = QListWidgetItem(f"{server.name} ({server.transport}: {server.target}) — "
                                   f"{status_text(status)}")
            item.setData(Qt.ItemDataRole.UserRole, server.name)
            self.servers.addItem(item)
            if server.name == current:
                self.servers.setCurrentItem(item)
        if self.servers.currentRow() < 0 and self.servers.count():
            self.servers.setCurrentRow(0)
        self.servers.blockSignals(False)
        self._show_tools()

    def _show_tools(self) -> None:
        server = self.selected()
        self.tools.blockSignals(True)
        self.tools.clear()
        for button in (self.toggle_button, self.start_button, self.restart_button,
                       self.remove_button):
            button.setEnabled(server is not None)
        if server is not None:
            self.toggle_button.setText("Disable" if server.enabled else "Enable")
            status = self._tools.status(server.name)
            for tool in status.tools:
                item = QListWidgetItem(tool.name + (" (always allowed)" if tool.always_allowed
                                                    else ""))
                item.setData(Qt.ItemDataRole.UserRole, tool.name)
                item.setToolTip(tool.description)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if tool.enabled
                                   else Qt.CheckState.Unchecked)
                self.tools.addItem(item)
            self.error.setText("\n".join(([status.error] if status.error else [])
                                         + list(status.warnings)))
        self.tools.blockSignals(False)

    # -- intents ---------------------------------------------------------------------------
    def add(self) -> None:
        try:
            found = parse_target(self.name.text().strip(), self.target.text())
            server = self._tools.add(found)  # unconfirmed: confirmed at its first start
        except (BackendError, ValueError) as exc:
            self.error.setText(getattr(exc, "user_message", str(exc)))
            return
        self.name.clear()
        self.target.clear()
        self._added([server.name])

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import mcp.json", str(Path.home()),
                                              "MCP config (*.json)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Add every server of an mcp.json (LM Studio, Claude Desktop, Cursor)."""
        try:
            found = parse_mcp_json(path.read_text(encoding="utf-8"))
            names = [self._tools.add(entry).name for entry in found]
        except OSError as exc:
            self.error.setText(f"Can't read {path}: {exc.strerror or exc}.")
            return
        except BackendError as exc:
            self.error.setText(exc.user_message)
            return
        self._added(names)

    def _added(self, names: list[str]) -> None:
        self.refresh(select=names[0] if names else None)
        self.servers_changed.emit()

    def toggle(self) -> None:
        server = self.selected()
        if server is not None:
            self._tools.set_enabled(server.name, not server.enabled)
            self.refresh()
            self.servers_changed.emit()

    def remove(self) -> None:
        server = self.selected()
        if server is not None:
            self._tools.remove(server.name)
            self.refresh()
            self.servers_changed.emit()

    def _tool_toggled(self, item: QListWidgetItem) -> None:
        server = self.selected()
        if server is not None:
            self._tools.set_tool_enabled(server.name, item.data(Qt.ItemDataRole.UserRole),
                                         item.checkState() == Qt.CheckState.Checked)

    def start(self) -> None:
        server = self.selected()
        if server is not None:
            self._confirmed_then(server, lambda: self._run(server.name, restart=False))

    def restart(self) -> None:
        server = self.selected()
        if server is not None:
            self._confirmed_then(server, lambda: self._run(server.name, restart=True))

    def _confirmed_then(self, server: McpServer, then: Callable[[], object]) -> None:
        """Run ``then`` once the server's command is confirmed: at once if it was, else
        after the person said Yes to its exact command line."""
        if not server.needs_confirmation:
            then()
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Run this program?",
                          f"The MCP server '{server.name}' starts this program, which runs "
                          f"with your rights:\n\n{server.command_line}\n\nStart it?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)

        def answered(button: int) -> None:
            self.confirm_box = None
            if button == QMessageBox.StandardButton.Yes:
                self._tools.confirm(server.name)
                then()
            else:
                self.refresh()

        box.finished.connect(answered)
        self.confirm_box = box
        box.open()  # not exec(): a nested modal loop would stall asyncio

    def _run(self, name: str, *, restart: bool) -> None:
        async def go() -> None:
            self.start_button.setEnabled(False)
            self.restart_button.setEnabled(False)
            try:
                if restart:
                    await self._tools.restart(name)
                else:
                    await self._tools.start(name)
            except BackendError as exc:
                self.problem.emit(exc.user_message)
            finally:
                self.refresh(select=name)
                self.servers_changed.emit()

        self._task = asyncio.ensure_future(go())
