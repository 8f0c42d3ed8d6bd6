"""Hearth's line icons (``assets/icons/ui/*.svg``), drawn in the current theme's colours.

The SVGs are drawn with ``currentColor``; Qt's SVG renderer has no notion of it, so the text
is recoloured before rendering. The colour is looked up at paint time, not when the icon is
made: a theme switch repaints every icon without anyone re-setting it. Renderers are cached
per (icon, colour), pixmaps by Qt's own icon cache key, so a repaint costs a dictionary hit.

GUI thread only (QSvgRenderer and QPixmap are).
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QByteArray, QRect, QSize, Qt
from PySide6.QtGui import QIcon, QIconEngine, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from app.theme import current_palette

# Beside app/ in a checkout and in the packaged app alike (the bundle keeps assets/ there).
ICON_DIR = Path(__file__).resolve().parents[1] / "assets" / "icons" / "ui"
Tone = Literal["text", "muted", "accent", "on_accent"]


@cache
def _svg(name: str) -> str:
    path = ICON_DIR / f"{name}.svg"
    if not path.is_file():  # a typo in a name is a bug: fail where it is made, not blank
        raise FileNotFoundError(f"no icon {name!r} in {ICON_DIR}")
    return path.read_text(encoding="utf-8")


@cache
def _renderer(name: str, colour: str) -> QSvgRenderer:
    return QSvgRenderer(QByteArray(_svg(name).replace("currentColor", colour).encode()))


@lru_cache(maxsize=512)
def _pixmap(name: str, colour: str, width: int, height: int, scale: float) -> QPixmap:
    pixmap = QPixmap(round(width * scale), round(height * scale))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    _renderer(name, colour).render(painter, QRect(0, 0, pixmap.width(), pixmap.height()))
    painter.end()
    pixmap.setDevicePixelRatio(scale)
    return pixmap


class _ThemedIconEngine(QIconEngine):
    """Draws one SVG in a palette colour: ``tone`` normally, ``checked`` when the button is
    on (the current page in the rail), the faint colour when disabled."""

    def __init__(self, name: str, tone: Tone, checked: Tone) -> None:
        super().__init__()
        _svg(name)  # fail now on a missing file
        self._name, self._tone, self._checked = name, tone, checked

    def _colour(self, mode: QIcon.Mode, state: QIcon.State) -> str:
        palette = current_palette()
        if mode == QIcon.Mode.Disabled:
            return palette.faint
        tone = self._checked if state == QIcon.State.On else self._tone
        return getattr(palette, tone)

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode,
              state: QIcon.State) -> None:
        _renderer(self._name, self._colour(mode, state)).render(painter, rect)

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def scaledPixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State,
                     scale: float) -> QPixmap:
        return _pixmap(self._name, self._colour(mode, state), size.width(), size.height(),
                       scale)

    def actualSize(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QSize:
        return size

    def clone(self) -> QIconEngine:
        return _ThemedIconEngine(self._name, self._tone, self._checked)

    def key(self) -> str:
        return "hearth-themed-svg"


def icon(name: str, tone: Tone = "muted", *, checked: Tone = "accent") -> QIcon:
    """The icon ``assets/icons/ui/<name>.svg`` in the theme's ``tone`` colour."""
    return QIcon(_ThemedIconEngine(name, tone, checked))
