"""Small widget makers the Models page's tabs share, so their tables and buttons look alike.

GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QPushButton, QTableView, QWidget


def table(name: str, model: QAbstractItemModel, parent: QWidget) -> QTableView:
    """A read-only table that selects one whole row at a time."""
    view = QTableView(parent)
    view.setObjectName(name)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    # Tab leaves the table for the next control (arrow keys move the selected row): with
    # Qt's default, Tab walks every cell and keyboard users can't get past a long list.
    view.setTabKeyNavigation(False)
    # The keyboard's row is always the selected row: Qt otherwise gives a table that gets focus
    # an unselected "current" cell, and the buttons that act on the selection stay grey.
    view.selectionModel().currentRowChanged.connect(
        lambda current, _previous: current.isValid() and view.selectRow(current.row()))
    view.verticalHeader().hide()
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return view


def button(text: str, name: str, parent: QWidget, slot: Callable[[], object]) -> QPushButton:
    made = QPushButton(text, parent)
    made.setObjectName(name)
    made.clicked.connect(slot)
    return made
