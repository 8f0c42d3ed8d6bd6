"""Editors made from pydantic fields, so the settings models stay the only schema.

``FieldEditor`` turns one ``model_fields[name]`` into a widget: ``int`` → QSpinBox, ``float`` →
QDoubleSpinBox, ``bool`` → QCheckBox, ``Literal``/``Enum`` → QComboBox, ``str`` → QLineEdit, with
bounds from the field's ``ge``/``le`` (``gt``/``lt``) and its ``description`` as the tooltip.
``X | None`` adds a checkbox for ``None`` whose caption ("Auto", "Random", "No limit") comes
from what the description says empty means; ``bool | None`` becomes an Auto/On/Off combo, which
reads better than two checkboxes.

``SettingsForm`` lays out several editors for one model instance it reads through ``get`` and
replaces through ``put``: every edit is validated by ``model_validate`` of the whole updated
model, so cross-field validators apply too. An invalid value never reaches the settings: the
editor goes back to the previous value and says why beneath it. A ``put`` that returns False
(the settings could not be saved) puts the previous value back too.

GUI thread only.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.style import mark_error

INT32_MAX = 2**31 - 1  # QSpinBox holds a C int: larger bounds (a 32-bit seed) are clamped


@dataclass(frozen=True)
class Row:
    """How one field is shown, where the defaults derived from the field need help."""

    name: str
    label: str | None = None  # default: the field's title, else its name humanised
    step: float | None = None  # default: 1 for ints, by the bounds' span for floats
    none_label: str | None = None  # default: from the description ("empty for random")
    fallback: Any = None  # shown when the value is None and the person unticks the box
    choice_labels: Mapping[Any, str] = field(default_factory=dict)


def humanise(name: str) -> str:
    """``"repeat_penalty"`` → ``"Repeat penalty"``."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def none_label_for(description: str | None) -> str:
    """The caption of the ``None`` checkbox, from what the description says empty means."""
    _, _, meaning = (description or "").lower().partition("empty")
    if "random" in meaning:
        return "Random"
    if "no limit" in meaning:
        return "No limit"
    return "Auto"


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    """(the inner type, whether ``None`` is allowed) of ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(annotation)):
            return args[0], True
    return annotation, False


def _bounds(info: FieldInfo, epsilon: float) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        if getattr(item, "ge", None) is not None:
            low = item.ge
        if getattr(item, "gt", None) is not None:
            low = item.gt + epsilon
        if getattr(item, "le", None) is not None:
            high = item.le
        if getattr(item, "lt", None) is not None:
            high = item.lt - epsilon
    return low, high


def _float_format(low: float | None, high: float | None) -> tuple[float, int]:
    """(step, decimals): fine enough for min_p's 0.05, coarse enough for a minutes field."""
    if low is None or high is None:
        return 0.1, 2
    span = high - low
    if span <= 1:
        return 0.01, 2
    if span <= 10:
        return 0.05, 2
    if span <= 100:
        return 0.5, 1
    return 1.0, 1


class _WheelGuard(QObject):
    """Scrolling the panel over a spin box or combo scrolls the panel, not the value, unless
    the editor has focus: the classic way settings get changed by accident."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) \
                and not watched.hasFocus():
            event.ignore()  # ignored + filtered: Qt hands it on to the scroll area
            return True
        return False


class FieldEditor(QWidget):
    """The editor of one field. ``edited`` carries what the person set (not yet validated);
    ``set_value`` never emits it."""

    edited = Signal(object)

    def __init__(self, info: FieldInfo, row: Row, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = row.name
        self._fallback = row.fallback
        self._value: Any = None
        self._guard = _WheelGuard(self)
        inner, self.optional = _split_optional(info.annotation)
        self.none_box: QCheckBox | None = None
        self.editor = self._make_editor(info, inner, row)
        self.editor.setToolTip(info.description or "")
        self.editor.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.editor.installEventFilter(self._guard)

        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.editor, 1)
        if self.optional and not isinstance(self.editor, QComboBox):
            self.none_box = QCheckBox(row.none_label or none_label_for(info.description))
            self.none_box.setToolTip(info.description or "")
            self.none_box.toggled.connect(self._on_none_toggled)
            line.addWidget(self.none_box)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        mark_error(self.problem)  # the theme's error colour
        self.problem.hide()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addLayout(line)
        outer.addWidget(self.problem)

    # -- building ---------------------------------------------------------------------------

    def _make_editor(self, info: FieldInfo, inner: Any, row: Row) -> QWidget:
        choices = [(True, "On"), (False, "Off")] if inner is bool and self.optional \
            else self._choices(inner)
        if choices is not None:
            if self.optional:  # None is one more choice, not a separate checkbox
                choices = [(None, row.none_label or none_label_for(info.description)),
                           *choices]
            combo = QComboBox()
            # Long item texts are elided, not allowed to widen a narrow panel.
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
            for value, text in choices:
                combo.addItem(row.choice_labels.get(value, text), value)
            combo.currentIndexChanged.connect(lambda _i: self._emit())
            return combo
        if inner is bool:
            box = QCheckBox()
            box.toggled.connect(lambda _on: self._emit())
            return box
        if inner is int:
            spin = QSpinBox()
            low, high = _bounds(info, 1)
            spin.setRange(max(int(low if low is not None else -INT32_MAX), -INT32_MAX),
                          min(int(high if high is not None else INT32_MAX), INT32_MAX))
            spin.setSingleStep(int(row.step or 1))
            self._spin_common(spin)
            return spin
        if inner is float:
            dspin = QDoubleSpinBox()
            low, high = _bounds(info, 0.01)
            step, decimals = _float_format(low, high)
            dspin.setDecimals(decimals)
            dspin.setRange(low if low is not None else -1e9, high if high is not None else 1e9)
            dspin.setSingleStep(row.step or step)
            self._spin_common(dspin)
            return dspin
        if inner is str:
            line = QLineEdit()
            line.editingFinished.connect(self._emit)
            return line
        raise TypeError(f"no editor for {self.name}: {info.annotation!r}")

    @staticmethod
    def _choices(inner: Any) -> list[tuple[Any, str]] | None:
        if get_origin(inner) is Literal:
            return [(v, str(v)) for v in get_args(inner)]
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            return [(m, humanise(str(m.value))) for m in inner]
        return None

    def _spin_common(self, spin: QSpinBox | QDoubleSpinBox) -> None:
        # Only a finished edit counts: typing "4096" must not try 4, 40 and 409 first.
        spin.setKeyboardTracking(False)
        # Qt sizes a spin box for its largest value (ten digits for a seed); let it shrink to
        # fit a narrow panel, long values scroll inside it.
        spin.setMinimumWidth(min(spin.minimumSizeHint().width(), 72))
        spin.valueChanged.connect(lambda _v: self._emit())

    # -- values -----------------------------------------------------------------------------

    def value(self) -> Any:
        if self.none_box is not None and self.none_box.isChecked():
            return None
        editor = self.editor
        if isinstance(editor, QComboBox):
            return editor.currentData()
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, (QSpinBox, QDoubleSpinBox)):
            return editor.value()
        assert isinstance(editor, QLineEdit)
        return editor.text()

    def set_value(self, value: Any) -> None:
        """Show ``value`` (from the settings); emits nothing."""
        self._value = value
        widgets: list[QWidget] = [self.editor] + ([self.none_box] if self.none_box else [])
        for w in widgets:
            w.blockSignals(True)
        try:
            if self.none_box is not None:
                self.none_box.setChecked(value is None)
                self.editor.setEnabled(value is not None)
                if value is None:
                    value = self._fallback
            self._show(value)
        finally:
            for w in widgets:
                w.blockSignals(False)

    def set_fallback(self, value: Any) -> None:
        """What the editor offers when ``None`` is unticked (e.g. the planner's layer count)."""
        self._fallback = value
        if self.none_box is not None and self.none_box.isChecked():
            self.set_value(None)

    def _show(self, value: Any) -> None:
        editor = self.editor
        if isinstance(editor, QComboBox):
            index = editor.findData(value)
            editor.setCurrentIndex(max(index, 0))
        elif isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QSpinBox):
            editor.setValue(int(value) if value is not None else editor.minimum())
        elif isinstance(editor, QDoubleSpinBox):
            editor.setValue(float(value) if value is not None else editor.minimum())
        elif isinstance(editor, QLineEdit):
            editor.setText("" if value is None else str(value))

    def _on_none_toggled(self, checked: bool) -> None:
        self.editor.setEnabled(not checked)
        self._emit()

    def _emit(self) -> None:
        self.edited.emit(self.value())

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()

    def clear_problem(self) -> None:
        self.problem.clear()
        self.problem.hide()


class SettingsForm(QWidget):
    """Editors for ``rows`` of the model that ``get`` returns; a valid edit replaces it through
    ``put`` (a new instance: other holders of the old one see a consistent snapshot) and emits
    ``changed`` with the field name."""

    changed = Signal(str)

    def __init__(self, get: Callable[[], BaseModel], put: Callable[[BaseModel], bool | None],
                 rows: Sequence[Row | str], parent: QWidget | None = None, *,
                 label_width: int | None = None) -> None:
        super().__init__(parent)
        self._get, self._put = get, put
        self.editors: dict[str, FieldEditor] = {}
        fields = type(get()).model_fields
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # A fixed label column (shared by forms stacked in one panel, so they line up) whose
        # long labels wrap, rather than rows jumping between one and two lines.
        layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for spec in rows:
            row = Row(spec) if isinstance(spec, str) else spec
            info = fields[row.name]
            editor = FieldEditor(info, row, self)
            editor.edited.connect(lambda value, name=row.name: self._on_edited(name, value))
            label = QLabel(row.label or info.title or humanise(row.name))
            label.setToolTip(info.description or "")
            label.setBuddy(editor.editor)
            editor.editor.setAccessibleName(label.text())  # screen readers name the field
            if editor.none_box is not None:
                editor.none_box.setAccessibleName(f"{label.text()}: {editor.none_box.text()}")
            if label_width is not None:
                label.setWordWrap(True)
                label.setFixedWidth(label_width)
            layout.addRow(label, editor)
            self.editors[row.name] = editor
        self.refresh()

    def editor(self, name: str) -> FieldEditor:
        return self.editors[name]

    def refresh(self) -> None:
        """Show the current values (after something else changed the settings)."""
        current = self._get()
        for name, editor in self.editors.items():
            editor.set_value(getattr(current, name))
            editor.clear_problem()

    def _on_edited(self, name: str, value: Any) -> None:
        current = self._get()
        editor = self.editors[name]
        if getattr(current, name) == value:
            editor.clear_problem()
            return
        try:
            updated = type(current).model_validate({**current.model_dump(), name: value})
        except ValidationError as exc:
            editor.set_value(getattr(current, name))  # the previous value stays
            first = exc.errors()[0]
            editor.show_problem(f"Not changed: {first['msg']}.")
            return
        editor.clear_problem()
        if self._put(updated) is False:
            editor.set_value(getattr(current, name))  # not saved: the previous value stays
            return
        self.changed.emit(name)
