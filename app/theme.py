"""Which palette the app wears (follow the system, light or dark) and putting it on.

``apply_theme`` sets Qt's palette (what plain widgets and dialogs draw with) and the
application stylesheet made from the same ``Palette`` (app/style.py), on the QApplication so
dialogs and menus match the window. ``ThemeController`` keeps it in step with the saved
choice and, when that is "system", with the desktop's light/dark setting as it changes.

The current palette is also kept here for painters that draw outside stylesheets (themed
icons, rendered markdown): like the QApplication's palette it is one per process, and it is
read at paint time so a switch repaints everything without re-setting anything.

GUI thread only.
"""

from __future__ import annotations

from typing import Literal, get_args

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.palette import LIGHT, PALETTES, Palette
from app.style import style_sheet

ThemeChoice = Literal["system", "light", "dark"]
THEME_CHOICES: tuple[ThemeChoice, ...] = get_args(ThemeChoice)
THEME_LABELS: dict[ThemeChoice, str] = {"system": "Follow system", "light": "Light",
                                        "dark": "Dark"}

_current: Palette = LIGHT  # see the module docstring: one per process, like Qt's palette


def current_palette() -> Palette:
    return _current


def resolve(choice: str, *, system_dark: bool) -> Palette:
    """The palette for a saved choice; anything unknown follows the system."""
    if choice in PALETTES:
        return PALETTES[choice]  # type: ignore[index]
    return PALETTES["dark" if system_dark else "light"]


def system_prefers_dark(fallback: bool = False) -> bool:
    """The desktop's light/dark setting; ``fallback`` where the platform doesn't say
    (offscreen, a bare X server)."""
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Unknown:
        return fallback
    return scheme == Qt.ColorScheme.Dark


def qt_palette(p: Palette) -> QPalette:
    """Qt's colour roles from ours, for everything the stylesheet does not draw."""
    palette = QPalette()
    role = QPalette.ColorRole
    roles = {
        role.Window: p.window, role.WindowText: p.text, role.Base: p.surface,
        role.AlternateBase: p.raised, role.Text: p.text, role.Button: p.surface,
        role.ButtonText: p.text, role.BrightText: p.on_accent, role.Highlight: p.accent,
        role.HighlightedText: p.on_accent, role.Link: p.link, role.LinkVisited: p.link,
        role.ToolTipBase: p.surface, role.ToolTipText: p.text, role.PlaceholderText: p.muted,
        role.Light: p.raised, role.Midlight: p.border, role.Mid: p.border_strong,
        role.Dark: p.border_strong, role.Shadow: p.rail, role.Accent: p.accent,
    }
    for colour_role, colour in roles.items():
        palette.setColor(colour_role, QColor(colour))
    for colour_role in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, colour_role, QColor(p.faint))
    return palette


def apply_theme(app: QApplication, p: Palette) -> None:
    """Dress the whole application in ``p`` (Fusion underneath: it honours palettes on every
    platform, where native styles would keep some system colours)."""
    global _current
    _current = p
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setPalette(qt_palette(p))
    app.setStyleSheet(style_sheet(p))


class ThemeController(QObject):
    """Applies the saved choice; follows the desktop when the choice is "system"."""

    changed = Signal(object)  # Palette, after it was applied

    def __init__(self, app: QApplication, choice: str = "system",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._app = app
        self._choice = choice
        # Where the platform has no colour scheme, its palette before ours is the hint
        # (read once: after the first apply, the palette is our own).
        window = QGuiApplication.palette().color(QPalette.ColorRole.Window)
        self._platform_dark = window.lightness() < 128
        hints = QGuiApplication.styleHints()
        if hints is not None:
            # A bound slot, not a lambda: Qt drops the connection with this object.
            hints.colorSchemeChanged.connect(self._scheme_changed)
        self._apply()

    @property
    def choice(self) -> str:
        return self._choice

    def set_choice(self, choice: str) -> None:
        if choice not in THEME_CHOICES:
            raise ValueError(f"unknown theme {choice!r}; choose one of {THEME_CHOICES}")
        self._choice = choice
        self._apply()

    @Slot(Qt.ColorScheme)
    def _scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self._choice == "system":
            self._apply()

    def _apply(self) -> None:
        palette = resolve(self._choice,
                          system_dark=system_prefers_dark(self._platform_dark))
        apply_theme(self._app, palette)
        self.changed.emit(palette)
