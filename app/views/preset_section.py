"""The parameter panel's Presets section: pick, load, save as, import a Modelfile.

A preset (backend/library/presets.py) is a base model plus Ollama-named parameters and a
system prompt. ``preset_values`` and ``preset_spec`` translate between it and the settings
(pure); ``PresetSection`` is the widget. It never writes the settings itself: a preset to
apply is handed to the panel through ``chosen``, which owns the settings and the editors.

Building and saving a preset scans the model folders, so it runs with ``asyncio.to_thread``.
GUI thread only; needs a running qasync loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from pydantic import ValidationError
from PySide6.QtCore import Signal
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

from backend.errors import BackendError
from backend.library.modelfile import Modelfile, parse_modelfile
from backend.library.presets import Preset, build_preset, find_preset, list_presets, save_preset
from backend.settings import ChatSettings, EngineSettings, SamplingSettings, Settings

# Preset parameters (Ollama names) that mean the same as a sampling setting.
SAMPLING_PARAMS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                   "presence_penalty", "frequency_penalty")
# Every preset parameter the panel writes; the rest (stop, repeat_last_n) a save keeps as is.
PANEL_PARAMS = frozenset({*SAMPLING_PARAMS, "seed", "num_predict", "num_ctx"})


def preset_values(settings: Settings, preset: Preset
                  ) -> tuple[SamplingSettings, EngineSettings, ChatSettings]:
    """The settings with ``preset`` applied: its parameters (those it names; the others keep
    their values) and its system prompt. Raises ``ValidationError`` for a value out of bounds.
    """
    params = preset.parameters
    sampling: dict[str, Any] = {k: params[k] for k in SAMPLING_PARAMS if k in params}
    if "seed" in params:  # Ollama's -1: random
        sampling["seed"] = params["seed"] if params["seed"] >= 0 else None
    if "num_predict" in params:  # Ollama's -1 (or -2): no limit
        sampling["max_tokens"] = params["num_predict"] if params["num_predict"] > 0 else None
    engine = {"n_ctx": params["num_ctx"]} if "num_ctx" in params else {}
    return (SamplingSettings.model_validate({**settings.sampling.model_dump(), **sampling}),
            EngineSettings.model_validate({**settings.engine.model_dump(), **engine}),
            settings.chat.model_copy(update={"system_prompt": preset.system or "",
                                             "preset": preset.name}))


def preset_spec(settings: Settings, base: str, old: Preset | None) -> Modelfile:
    """The Modelfile of the current settings on ``base``. Replacing ``old`` keeps what the
    panel doesn't show (template, stop strings, seeded messages, licence)."""
    sampling = settings.sampling
    params = {k: v for k, v in (old.parameters if old else {}).items() if k not in PANEL_PARAMS}
    params |= {k: getattr(sampling, k) for k in SAMPLING_PARAMS}
    params |= {"seed": -1 if sampling.seed is None else sampling.seed,
               "num_predict": sampling.max_tokens or -1, "num_ctx": settings.engine.n_ctx}
    return Modelfile(base, system=settings.chat.system_prompt or None,
                     template=old.template if old else None,
                     license=old.license if old else None, parameters=params,
                     messages=tuple((m.role, m.content) for m in old.messages) if old else ())


def describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where} {first['input']!r}: {first['msg']}"


class PresetSection(QWidget):
    chosen = Signal(object)  # a Preset to apply: loaded, or just imported
    saved = Signal(str)  # the name of a preset saved from the current settings
    problem = Signal(str)

    def __init__(self, settings: Callable[[], Settings], base_model: Callable[[], str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings, self._base_model = settings, base_model
        self.combo = QComboBox()
        self.combo.setPlaceholderText("No presets yet")
        self.combo.setToolTip("Presets saved here, made with `hearth create`, or imported.")
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(lambda: self.load_preset(self.combo.currentText()))
        self.save_button = QPushButton("Save as…")
        self.save_button.clicked.connect(self._ask_save_as)
        self.import_button = QPushButton("Import Modelfile…")
        self.import_button.clicked.connect(self._ask_import)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.hide()
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
        self.refresh(settings().chat.preset)

    def refresh(self, select: str | None = None) -> None:
        """Re-read the presets folder (the CLI may have added some) and select ``select``."""
        select = select or self.combo.currentText()
        self.combo.clear()
        self.combo.addItems([p.name for p in list_presets()])
        self.combo.setCurrentIndex(self.combo.findText(select or ""))
        self.load_button.setEnabled(self.combo.count() > 0)

    def load_preset(self, name: str) -> None:
        preset = find_preset(name) if name else None
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
        if find_preset(name) is not None and QMessageBox.question(
                self, "Replace preset?", f"A preset named '{name}' exists. Replace it?"
        ) != QMessageBox.StandardButton.Yes:
            return
        self.save_preset_as(name)

    @asyncSlot(str)
    async def save_preset_as(self, name: str) -> None:
        """Save the current settings as preset ``name``, based on the current model."""
        spec = preset_spec(self._settings(), self._base_model(), find_preset(name))
        preset = await self._store(spec, name)
        if preset is not None:
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
        """Parse the Modelfile at ``path``, save it as preset ``name``, and hand it on."""
        try:
            text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
            spec = parse_modelfile(text)  # ModelfileError names the line
        except BackendError as exc:
            self.problem.emit(f"{Path(path).name}: {exc.user_message}")
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.problem.emit(f"Hearth couldn't read {Path(path).name} ({exc}); check the "
                              "file and try again.")
            return
        preset = await self._store(spec, name)
        if preset is not None:
            self.chosen.emit(preset)

    async def _store(self, spec: Modelfile, name: str) -> Preset | None:
        buttons = (self.load_button, self.save_button, self.import_button)
        for button in buttons:
            button.setEnabled(False)
        try:
            preset, warnings = await asyncio.to_thread(_build_and_save, name, spec)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
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
        self.status.setText(" ".join([f"Saved preset '{preset.name}'.", *warnings]))
        self.status.show()
        return preset


def _build_and_save(name: str, spec: Modelfile) -> tuple[Preset, list[str]]:
    """Runs on a worker thread: files only, never Qt."""
    preset, warnings = build_preset(name, spec)
    save_preset(preset)
    return preset, warnings


def suggest_name(path: Path) -> str:
    """A preset name from the file: its folder's name for a plain "Modelfile"."""
    stem = path.parent.name if path.stem.lower() == "modelfile" else path.stem
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "imported"
