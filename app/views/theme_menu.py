"""The theme choice (Follow system / Light / Dark): a menu, saved in the settings.

One ``QActionGroup`` serves both places that offer it, the View menu and the rail's theme
button, so they always agree. A pick is applied at once and saved (``appearance.theme``);
a save that fails is said in the banner and the theme still changes for this session.
GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QApplication, QMenu, QWidget

from app.theme import THEME_CHOICES, THEME_LABELS, ThemeController
from backend.api import Hearth
from backend.errors import BackendError


class ThemeChooser(QObject):
    problem = Signal(str)

    def __init__(self, hearth: Hearth, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        app = QApplication.instance()
        assert isinstance(app, QApplication), "the window needs a QApplication"
        self.controller = ThemeController(app, hearth.settings.snapshot().appearance.theme,
                                          self)
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        self.actions: dict[str, QAction] = {}
        for choice in THEME_CHOICES:
            action = QAction(THEME_LABELS[choice], self)
            action.setCheckable(True)
            action.setChecked(choice == self.controller.choice)
            action.triggered.connect(lambda _checked=False, c=choice: self.choose(c))
            self.group.addAction(action)
            self.actions[choice] = action

    def menu(self, parent: QWidget) -> QMenu:
        menu = QMenu("&Theme", parent)
        menu.addActions(list(self.actions.values()))
        return menu

    def choose(self, choice: str) -> None:
        self.controller.set_choice(choice)
        self.actions[choice].setChecked(True)
        try:
            self._hearth.settings.update(appearance={"theme": choice})
        except BackendError as exc:
            self.problem.emit(exc.user_message)
        except OSError as exc:
            self.problem.emit(f"Hearth couldn't save the theme ({exc.strerror or exc}); it "
                              "applies until you quit. Check that the disk has space.")
