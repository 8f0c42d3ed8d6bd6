"""Unexpected exceptions: written to the log file, shown in a dialog, and the app goes on.

Installed once at start-up for ``sys.excepthook`` (Qt slots), threads and the asyncio loop
(qasync tasks). The dialog's report is plain text the user can copy into a bug report.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import platform
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from backend.api import hearth_paths

log = logging.getLogger("hearth")
LOG_NAME = "hearth.log"


def setup_logging() -> Path:
    """Log to a rotating file under the log dir; returns its path."""
    folder = hearth_paths().log_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_NAME
    root = logging.getLogger()
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2 << 20, backupCount=3,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return path


def crash_report(exc_type: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> str:
    from backend.api import __version__

    lines = [f"Hearth {__version__} · Python {platform.python_version()} · "
             f"{platform.platform()}", ""]
    lines += traceback.format_exception(exc_type, exc, tb)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class CrashDialog(QDialog):
    def __init__(self, report: str, log_path: Path | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("crash_dialog")
        self.setWindowTitle("Hearth hit an unexpected problem")
        where = f" It was also written to {log_path}." if log_path else ""
        intro = QLabel("Something went wrong that Hearth did not expect. Your chats and "
                       "settings are safe and you can keep working. If it happens again, "
                       f"please send this report with a bug report.{where}", self)
        intro.setWordWrap(True)
        self.report = QPlainTextEdit(report, self)
        self.report.setObjectName("crash_report")
        self.report.setReadOnly(True)
        self.report.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        copy = buttons.addButton("Copy report", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(report))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.report, 1)
        layout.addWidget(buttons)
        self.resize(640, 420)


class CrashReporter(QObject):
    """Routes every uncaught exception to the log and, on the GUI thread, to a dialog."""

    crashed = Signal(str)  # the report; queued from any thread to the GUI thread

    def __init__(self, parent_window: Callable[[], QWidget | None]) -> None:
        super().__init__()
        self._parent_window = parent_window
        self.log_path: Path | None = None
        self.dialogs: list[CrashDialog] = []
        self.crashed.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.log_path = setup_logging()
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_hook
        if loop is not None:
            loop.set_exception_handler(self._loop_hook)

    def uninstall(self) -> None:
        """Put the previous hooks back (the window is gone; tests install several)."""
        previous = getattr(self, "_previous", None)
        if previous is not None:
            sys.excepthook, threading.excepthook = previous
            self._previous = None

    def report(self, exc_type: type[BaseException], exc: BaseException,
               tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            return
        text = crash_report(exc_type, exc, tb)
        log.error("unexpected exception\n%s", text)
        self.crashed.emit(text)

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException,
                    tb: TracebackType | None) -> None:
        self.report(exc_type, exc, tb)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            self.report(args.exc_type, args.exc_value, args.exc_traceback)

    def _loop_hook(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.report(type(exc), exc, exc.__traceback__)
        else:
            log.error("asyncio: %s", context.get("message"))

    def _show(self, report: str) -> None:
        parent = self._parent_window()
        if parent is not None and not shiboken6.isValid(parent):
            parent = None  # the window was already destroyed (closing): a dialog of its own
        dialog = CrashDialog(report, self.log_path, parent)
        self.dialogs.append(dialog)
        dialog.finished.connect(lambda _result: self.dialogs.remove(dialog))
        dialog.open()  # not exec(): a modal loop inside a qasync slot would stall asyncio
