"""Screenshots of images in a chat, light and dark: a sent message with its image in the
transcript, and two thumbnails in the composer. Taken from the real window under Xvfb:

    Xvfb :9 -screen 0 1280x800x24 &  DISPLAY=:9 openbox &
    DISPLAY=:9 QT_QPA_PLATFORM=xcb .venv/bin/python docs/take_image_screenshots.py light
    DISPLAY=:9 QT_QPA_PLATFORM=xcb .venv/bin/python docs/take_image_screenshots.py dark

The pictures are drawn here with QPainter (a landscape, a bar chart). The starter model is
shown as if paired with a projector, and the reply is canned where the dispatcher would hand
the request to the engine: the screenshot shows the window, not a model's answer. Each PNG is
written as ``docs/screenshots/images-<theme>.png``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"

from docs.take_screenshots import shot, wait_for  # noqa: E402  (one X grab, one wait)

REPLY = ("A cabin by a lake at sunset, with pine-covered hills behind it and the sun low "
         "over the water.")


def picture(kind: str) -> bytes:
    from PySide6.QtCore import QBuffer, QIODevice, QPointF, QRectF, Qt
    from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter, QPolygonF

    image = QImage(480, 320, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if kind == "landscape":
        sky = QLinearGradient(0, 0, 0, 320)
        sky.setColorAt(0, QColor("#f6a04d"))
        sky.setColorAt(1, QColor("#fbe3b0"))
        painter.fillRect(image.rect(), sky)
        painter.setBrush(QColor("#ffd36b"))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QPointF(330, 170), 42, 42)
        painter.setBrush(QColor("#2f5d50"))
        painter.drawPolygon(QPolygonF([QPointF(x, y) for x, y in (
            (0, 210), (90, 120), (170, 200), (260, 110), (380, 205), (480, 150), (480, 320),
            (0, 320))]))
        painter.setBrush(QColor("#3f7fa6"))
        painter.drawRect(QRectF(0, 230, 480, 90))
        painter.setBrush(QColor("#7a4a2b"))
        painter.drawRect(QRectF(90, 190, 60, 40))
        painter.setBrush(QColor("#a33b2b"))
        painter.drawPolygon(QPolygonF([QPointF(84, 192), QPointF(120, 165),
                                       QPointF(156, 192)]))
    else:
        painter.fillRect(image.rect(), QColor("#ffffff"))
        colours = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2")
        for index, (height, colour) in enumerate(zip((120, 200, 160, 250, 90), colours,
                                                     strict=True)):
            painter.fillRect(QRectF(40 + index * 85, 290 - height, 60, height), QColor(colour))
        painter.setPen(QColor("#333333"))
        painter.drawLine(30, 290, 460, 290)
        painter.drawLine(30, 20, 30, 290)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(buffer.data().data())


def canned_replies() -> None:
    """No model is asked: the dispatcher's local path answers with ``REPLY``, and no load
    happens (the starter is shown as a vision model only)."""
    from backend.api import Finished, Hearth, LoadedModel, TextDelta, Usage
    from backend.application import dispatch
    from backend.application.generation import Generation

    async def canned(request: Any) -> AsyncIterator[Any]:
        for word in REPLY.split(" "):
            yield TextDelta(request.request_id, word + " ")
            await asyncio.sleep(0.01)
        yield Finished(request.request_id, "stop", Usage(312, 0, 24, 0.21, 41.0))

    async def local(self: Any, model: str, request: Any, load_if_needed: bool,
                    release: Any) -> Generation:
        stream = canned(request)
        return Generation(request, model, stream, await anext(stream), release)

    async def no_load(self: Hearth, model: Any, plan: Any = None, **_: Any) -> LoadedModel:
        return LoadedModel("smollm2:135m", "smollm2.gguf", 4096, 1, 8192, 30, 0, 2, "gguf",
                           vision=True)

    real = Hearth.models
    dispatch.Dispatcher._local = local  # type: ignore[method-assign]
    Hearth.load = no_load  # type: ignore[method-assign]
    Hearth.models = lambda self: [  # type: ignore[method-assign]
        dataclasses.replace(m, mmproj=m.path) if m.id == "smollm2:135m" else m
        for m in real(self)]


async def take(theme: str) -> None:
    from app.launcher import http_server
    from app.main_window import MainWindow
    from app.views.image_widgets import check_image
    from backend.api import Hearth

    canned_replies()
    backend = Hearth(server=http_server)
    backend.settings.update(appearance={"theme": theme})
    window = MainWindow(backend)
    window.showMaximized()
    try:
        chat = window.chat
        chat.refresh_models()
        chat.show_model_choice("smollm2:135m")
        window.show_page("chat")
        await asyncio.sleep(1.5)
        chat.images.add([picture("landscape")])
        chat.composer.setPlainText("What is in this picture?")
        chat.send_message()
        await wait_for(lambda: len(chat.transcript.messages()) >= 2 and not chat.streaming)
        chat.input.images.set_images([check_image(picture("landscape"), "cabin.png"),
                                      check_image(picture("chart"), "sales.png")])
        chat.composer.setPlainText("Which of these two would suit a poster?")
        chat.composer.setFocus()
        await asyncio.sleep(1.5)
        shot("images", theme)
    finally:
        window.close()
        backend.close()


def main(argv: list[str]) -> int:
    theme = argv[1] if len(argv) > 1 else "light"
    if theme not in ("light", "dark") or not os.environ.get("DISPLAY"):
        print("Usage: under Xvfb, docs/take_image_screenshots.py light|dark")
        return 2
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-shots-")  # a fresh install
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication(argv)
    app.setApplicationName("Hearth")
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        runner.run(take(theme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
