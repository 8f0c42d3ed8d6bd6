"""The parameter panel's Presets section: pick, load, save as, import a Modelfile.

A preset is a base model plus Ollama-named parameters and a system prompt; ``hearth.presets``
(a ``PresetBook``) lists, finds, makes and saves them, as it does for ``hearth create`` and
``POST /api/create``. The section never writes the settings itself: a preset to apply is
handed to the panel through ``chosen``, which owns the settings and the editors.

Preset names are lower-case (as Ollama's): a name typed otherwise is saved lower-cased, and the
sentence after saving says so. That sentence goes away after a few seconds.

Saving and importing read the model folders, so they run with ``asyncio.to_thread``.
GUI thread only; needs a running qasync loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import shiboken6
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from backend.api import Preset, PresetBook
from backend.errors import BackendError

STATUS_CLEAR_MS = 6000  # "Saved preset …" stays this long


class PresetSection(QWidget):
    chosen = Signal(object)  # a Preset to apply: loaded, or just imported
    saved = Signal(str)  # the name of a preset saved from the current settings
    problem = Signal(str)

    def __init__(self, presets: PresetBook, active: str | None, base_model: Callable[[], str],
                 before_save: Callable[[], None], parent: QWidget | None = None) -> None:
        """``active``: the preset to select at first; ``base_model``: the model a preset saved
        now is based on; ``before_save``: brings the settings up to date (an edit still being
        typed) before they are saved as a preset."""
        super().__init__(parent)
        self._presets, self._base_model, self._before_save = presets, base_model, before_save
        self.combo = QComboBox()
        self.combo.setPlaceholderText("No presets yet")
        self.combo.setToolTip("Presets saved here, made with `hearth create`, or imported.")
        self.combo.setAccessibleName("Preset")
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(lambda: self.load_preset(self.combo.currentText()))
        self.save_button = QPushButton("Save as…")
        self.save_button.clicked.connect(self._ask_save_as)
        self.import_button = QPushButton("Import Modelfile…")
        self.import_button.clicked.connect(self._ask_import)
        self.status = QLabel()
        self.status.setObjectName("preset_status")
        self.status.setWordWrap(True)
        self.status.hide()
        self._status_timer = QTimer(self, singleShot=True, interval=STATUS_CLEAR_MS)
        self._status_timer.timeout.connect(self.status.hide)
        self.load_button.setAccessibleName("Load preset")
        self.save_button.setAccessibleName("Save settings as a preset")
        self.import_button.setAccessibleName("Import a Modelfile")
        top = QHBoxLayout()
        top.addWidget(self.combo, 1)
        top.addWidget(self.load_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.save_button)
        bottom.addWidget(self.import_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(top)
        column.addLayout(bottom)
        column.addWidget(self.status)
        self.refresh(active)

    def refresh(self, select: str | None = None) -> None:
        """Re-read the presets folder (the CLI may have added some) and select ``select``."""
        select = select or self.combo.currentText()
        self.combo.clear()
        self.combo.addItems([p.name for p in self._presets.all()])
        self.combo.setCurrentIndex(self.combo.findText(select or ""))
        self.load_button.setEnabled(self.combo.count() > 0)

    def load_preset(self, name: str) -> None:
        preset = self._presets.find(name) if name else None
        if preset is None:
            self.problem.emit(f"The preset '{name}' was not found; it may have been deleted. "
                              "Pick another one.")
            self.refresh()
            return
        self.chosen.emit(preset)

    def _ask_save_as(self) -> None:
        suggested = self.combo.currentText() or "my-preset"
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:", text=suggested)
        if not ok or not name.strip():
            return
        if self._presets.find(name) is not None and QMessageBox.question(
                self, "Replace preset?", f"A preset named '{name}' exists. Replace it?"
        ) != QMessageBox.StandardButton.Yes:
            return
        self.save_preset_as(name)

    @asyncSlot(str)
    async def save_preset_as(self, name: str) -> None:
        """Save the current settings as preset ``name``, based on the current model."""
        self._before_save()
        base = self._base_model()
        preset = await self._store(lambda: self._presets.save_settings_as(name, base))
        if preset is not None:
            if preset.name != name.strip():  # never silently: say what it is called now
                self.say(f"Saved as '{preset.name}': preset names are lower-case.")
            self.saved.emit(preset.name)

    def _ask_import(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Import a Modelfile", "", "Modelfiles (Modelfile *.modelfile *.txt);;"
            "All files (*)")
        if not path:
            return
        name, ok = QInputDialog.getText(self, "Import Modelfile", "Preset name:",
                                        text=suggest_name(Path(path)))
        if ok and name.strip():
            self.import_modelfile(path, name)

    @asyncSlot(str, str)
    async def import_modelfile(self, path: str, name: str) -> None:
        """Read the Modelfile at ``path``, save it as preset ``name``, and hand it on. Its
        FROM may name a .gguf file, a relative one beside the Modelfile (as Ollama reads it)."""
        file = Path(path)
        try:
            text = await asyncio.to_thread(file.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem.emit(f"Hearth couldn't read {file.name} ({exc}); check the file and "
                              "try again.")
            return
        preset = await self._store(  # a ModelfileError names the line
            lambda: self._presets.create(name, text, allow_paths=True,
                                         relative_to=file.parent), about=file.name)
        if preset is not None:
            self.chosen.emit(preset)

    async def _store(self, make: Callable[[], tuple[Preset, list[str]]], *,
                     about: str | None = None) -> Preset | None:
        """Run ``make`` (builds and saves a preset: files only, never Qt) on a worker thread;
        a refusal is reported, prefixed with ``about`` (the file it came from)."""
        buttons = (self.load_button, self.save_button, self.import_button)
        for button in buttons:
            button.setEnabled(False)
        try:
            preset, warnings = await asyncio.to_thread(make)
        except BackendError as exc:
            self.problem.emit(f"{about}: {exc.user_message}" if about else exc.user_message)
            return None
        except OSError as exc:
            self.problem.emit(f"Hearth couldn't save the preset ({exc.strerror or exc}); check "
                              "that the disk has space.")
            return None
        finally:
            if shiboken6.isValid(self):
                for button in buttons:
                    button.setEnabled(True)
        if not shiboken6.isValid(self):  # the panel closed while the worker ran
            return None
        self.refresh(preset.name)
        self.say(" ".join([f"Saved preset '{preset.name}'.", *warnings]))
        return preset

    def say(self, text: str) -> None:
        """A sentence under the buttons, for a few seconds."""
        self.status.setText(text)
        self.status.show()
        self._status_timer.start()


def suggest_name(path: Path) -> str:
    """A preset name from the file: its folder's name for a plain "Modelfile"."""
    stem = path.parent.name if path.stem.lower() == "modelfile" else path.stem
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "imported"
