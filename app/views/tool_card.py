"""``ToolCallCard``: one tool call the model made, in its reply: the tool, its arguments, the
person's answer (Allow once / Always for this tool / Deny) and, once it ran, the result folded.

The card only shows and asks; the decision goes out as ``decided`` and the chat
(``tool_reply.py``) passes it to the backend's ``ToolChat``. GUI thread only.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

ARGUMENTS_CHARS = 2_000  # the card is a summary; the history keeps the whole call
STATUS_WORDS = {"ok": "Result", "error": "Failed", "denied": "Denied",
                "cancelled": "Stopped", "timeout": "Timed out"}


def _arguments_text(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, ensure_ascii=False, indent=2)
    return text if len(text) <= ARGUMENTS_CHARS else text[:ARGUMENTS_CHARS] + "\n…"


class ToolCallCard(QFrame):
    decided = Signal(str)  # "once" | "always" | "deny"

    def __init__(self, tool: str, server: str, arguments: dict[str, Any], *,
                 needs_approval: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tool_call_card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.tool = tool
        title = QLabel(f"<b>Tool:</b> {tool}" + (f" <i>({server})</i>" if server else ""), self)
        title.setObjectName("tool_call_title")
        self.arguments = QLabel(_arguments_text(arguments), self)
        self.arguments.setObjectName("tool_call_arguments")
        self.arguments.setWordWrap(True)
        self.arguments.setStyleSheet("font-family: monospace;")
        self.state = QLabel("Waiting for your answer…" if needs_approval else "Running…", self)
        self.state.setObjectName("tool_call_state")

        self.allow_once = QPushButton("Allow once", self)
        self.allow_always = QPushButton("Always for this tool", self)
        self.deny = QPushButton("Deny", self)
        self.allow_always.setToolTip(f"Run {tool} from now on without asking (undo it in "
                                     "Tools → MCP servers).")
        buttons = QHBoxLayout()
        for button, decision in ((self.allow_once, "once"), (self.allow_always, "always"),
                                 (self.deny, "deny")):
            button.clicked.connect(lambda _=False, d=decision: self._decide(d))
            buttons.addWidget(button)
        buttons.addStretch(1)
        self._buttons = (self.allow_once, self.allow_always, self.deny)
        for button in self._buttons:
            button.setVisible(needs_approval)

        # The result, folded: a toggle that shows the text the model was given.
        self.result_toggle = QToolButton(self)
        self.result_toggle.setObjectName("tool_call_result_toggle")
        self.result_toggle.setCheckable(True)
        self.result_toggle.setAutoRaise(True)
        self.result_toggle.hide()
        self.result = QPlainTextEdit(self)
        self.result.setObjectName("tool_call_result")
        self.result.setReadOnly(True)
        self.result.setMaximumHeight(160)
        self.result.hide()
        self.result_toggle.toggled.connect(self._fold)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(4)
        layout.addWidget(title)
        layout.addWidget(self.arguments)
        layout.addLayout(buttons)
        layout.addWidget(self.state)
        layout.addWidget(self.result_toggle)
        layout.addWidget(self.result)

    @property
    def waiting(self) -> bool:
        return not self.deny.isHidden() and self.deny.isEnabled()

    def _decide(self, decision: str) -> None:
        for button in self._buttons:
            button.setEnabled(False)
        self.state.setText({"once": "Allowed once: running…", "always": "Always allowed: "
                            "running…", "deny": "Denied."}[decision])
        self.decided.emit(decision)

    def show_result(self, status: str, result: str, truncated: bool = False) -> None:
        """The call ended: say how, and fold its result under the card."""
        for button in self._buttons:
            button.setEnabled(False)
        word = STATUS_WORDS.get(status, status)
        lines = result.count("\n") + 1
        self.state.setText(word + (" (cut: it was too long)" if truncated else "") + ".")
        self.result.setPlainText(result)
        self.result_toggle.setText(f"▸ {word}: {lines} line{'s' if lines != 1 else ''}")
        self.result_toggle.show()
        self._fold(False)

    def _fold(self, shown: bool) -> None:
        self.result.setVisible(shown)
        text = self.result_toggle.text()
        if text:
            self.result_toggle.setText(("▾ " if shown else "▸ ") + text[2:])


def add_stored_result(view: QWidget, stats: dict[str, Any] | None, result: str
                      ) -> ToolCallCard:
    """A stored tool turn (``role == "tool"``) shown as its card, the result folded, in
    ``view``'s body (a ``MessageView``) in place of the raw text."""
    stats = stats or {}
    arguments = stats.get("arguments")
    card = ToolCallCard(str(stats.get("tool", "tool")), str(stats.get("server", "")),
                        arguments if isinstance(arguments, dict) else {},
                        needs_approval=False, parent=view)
    card.show_result(str(stats.get("status", "ok")), result, bool(stats.get("truncated")))
    body = getattr(view, "body", view)
    body.layout().addWidget(card)
    return card
