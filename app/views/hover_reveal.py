"""``HoverReveal``: a message's action icons, faded in while the pointer is over the message or
the keyboard focus is on one of them, and out of sight otherwise.

The buttons stay shown (Qt-wise) the whole time, only transparent: they keep their place (the
text does not jump when the pointer arrives), Tab still reaches them (the focus reveals them
at once) and screen readers still list them. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QGraphicsOpacityEffect, QWidget


class HoverReveal(QObject):
    def __init__(self, host: QWidget, actions: QWidget) -> None:
        super().__init__(host)
        self._host, self._actions = host, actions
        self._hovered = False
        self._effect = QGraphicsOpacityEffect(actions)
        actions.setGraphicsEffect(self._effect)
        host.installEventFilter(self)
        self.pinned = False  # shown regardless (a failed reply's Retry must be seen)
        self._update()

    def watch(self, button: QWidget) -> None:
        """Reveal the actions while ``button`` has the keyboard focus."""
        button.installEventFilter(self)

    @property
    def revealed(self) -> bool:
        return self._effect.opacity() > 0.5

    def pin(self, pinned: bool) -> None:
        self.pinned = pinned
        self._update()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if watched is self._host and kind in (QEvent.Type.Enter, QEvent.Type.Leave):
            self._hovered = kind == QEvent.Type.Enter
            self._update()
        elif kind in (QEvent.Type.FocusIn, QEvent.Type.FocusOut):
            self._update()
        return False

    def _update(self) -> None:
        focused = any(child.hasFocus() for child in self._actions.findChildren(QWidget))
        visible = self.pinned or self._hovered or focused
        self._effect.setOpacity(1.0 if visible else 0.0)
