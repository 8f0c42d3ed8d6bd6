"""The Server page's snippets: how to call this server with curl, OpenAI's and Ollama's clients.

The snippet makers are pure (root URL, model, key → text); ``SnippetTabs`` shows one per tab,
each with a Copy button. GUI thread only.
"""

from __future__ import annotations

import json
import shlex

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QTabWidget, QWidget


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


def copy_text(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


class SnippetTabs(QTabWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edits: dict[str, QPlainTextEdit] = {}
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for title, _make in SNIPPETS:
            page = QWidget(self)
            edit = QPlainTextEdit(page)
            edit.setReadOnly(True)
            edit.setAccessibleName(f"{title} example")
            edit.setFont(mono)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            edit.setFixedHeight(self.fontMetrics().lineSpacing() * 9)
            copy = QPushButton("Copy", page)
            copy.setAccessibleName(f"Copy the {title} example")
            copy.clicked.connect(lambda _=False, e=edit: copy_text(e.toPlainText()))
            row = QHBoxLayout(page)
            row.addWidget(edit, 1)
            row.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
            self.addTab(page, title)
            self.edits[title] = edit

    def show_for(self, root: str, model: str, api_key: str | None) -> None:
        for title, make in SNIPPETS:
            edit = self.edits[title]
            text = make(root, model, api_key)
            if edit.toPlainText() != text:  # no needless resets of a selection
                edit.setPlainText(text)

    def snippet(self, title: str) -> str:
        return self.edits[title].toPlainText()
