"""``NavRail``: the narrow strip of page icons at the window's left edge (Chat, Models, Server),
with room at its foot for window-wide buttons (the theme).

Icon-only buttons in one exclusive group; the current page's is checked (an accent icon on a
soft accent tile). Each says its name and shortcut in a tooltip and to screen readers, and Tab
and Space work on it like any button. It emits what was clicked; the sidebar and the window
decide what that means. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QPushButton, QVBoxLayout, QWidget

from app.icons import icon

# page name: (label, icon, shortcut); the window binds Ctrl+1..3 in this order.
RAIL_PAGES = {
    "chat": ("Chat", "chat", "Ctrl+1"),
    "models": ("Models", "models", "Ctrl+2"),
    "server": ("Server", "server", "Ctrl+3"),
    "documents": ("Documents", "documents", "Ctrl+4"),  # the knowledge library
}
RAIL_WIDTH = 56
BUTTON_SIZE = 40
ICON_SIZE = 22


class NavRail(QWidget):
    page_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("nav_rail")
        # A QWidget subclass paints a stylesheet background only when asked to.
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFixedWidth(RAIL_WIDTH)
        self.buttons: dict[str, QPushButton] = {}
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(8, 10, 8, 10)
        self._layout.setSpacing(6)
        for name, (label, icon_name, keys) in RAIL_PAGES.items():
            button = self._button(f"nav_{name}", icon_name, f"{label} ({keys})", label)
            button.setCheckable(True)
            button.clicked.connect(lambda _checked=False, n=name: self.page_clicked.emit(n))
            self._group.addButton(button)
            self.buttons[name] = button
            self._layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        self._layout.addStretch(1)
        self.buttons["chat"].setChecked(True)

    def _button(self, object_name: str, icon_name: str, tip: str, name: str) -> QPushButton:
        button = QPushButton(self)
        button.setObjectName(object_name)
        button.setIcon(icon(icon_name, "muted", checked="accent"))
        button.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        button.setFixedSize(BUTTON_SIZE, BUTTON_SIZE)
        button.setToolTip(tip)
        button.setAccessibleName(name)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        return button

    def add_bottom_button(self, object_name: str, icon_name: str, tip: str,
                          name: str) -> QPushButton:
        """A window-wide button at the rail's foot (below the pages, above nothing)."""
        button = self._button(object_name, icon_name, tip, name)
        self._layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        return button

    def set_page(self, name: str) -> None:
        self.buttons[name].setChecked(True)
