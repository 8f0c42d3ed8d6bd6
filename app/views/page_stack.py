"""``PageStack``: the window's pages, one shown at a time, sized by the page shown.

A plain QStackedWidget asks for the largest minimum of all its pages, so the widest hidden
page (Models' tabs) kept the window from shrinking even on the Chat page, where the
parameter panel also needs room. Here only the current page counts. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QStackedWidget, QWidget


class PageStack(QStackedWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.currentChanged.connect(lambda _index: self.updateGeometry())

    def minimumSizeHint(self) -> QSize:
        page = self.currentWidget()
        return page.minimumSizeHint() if page is not None else super().minimumSizeHint()

    def sizeHint(self) -> QSize:
        page = self.currentWidget()
        return page.sizeHint() if page is not None else super().sizeHint()
