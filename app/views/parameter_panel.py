"""The parameter panel: system prompt, presets, sampling, context & memory, and the memory bar.

Every edit goes straight into ``backend.settings`` (so the next message uses it) and is saved
with ``backend.save_settings()`` 300 ms after the last change, and at once when the panel is
hidden or closed, so a restart keeps it. Sub-models of the settings are *replaced* on change,
never mutated: a worker thread planning from ``settings.engine`` sees one consistent snapshot.

Edits that only take effect on the next load (context, GPU layers, threads, flash attention,
KV cache type, parallel slots) emit ``load_settings_changed`` and re-plan the memory bar,
debounced; the plan is computed with ``asyncio.to_thread`` because it reads the GGUF header
and probes the hardware. Failures are emitted as ``problem`` (one sentence for a banner).

GUI thread only. Needs a running qasync loop for the async slots (planning, presets).
"""

from __future__ import annotations

import asyncio
import logging

import psutil
import shiboken6
from pydantic import BaseModel, ValidationError
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QHideEvent
from PySide6.QtWidgets import (
    QPlainTextEdit,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.memory_bar import MemoryBar
from app.views.preset_section import PresetSection, describe, preset_values
from app.views.settings_form import Row, SettingsForm
from backend.errors import BackendError
from backend.facade import Backend
from backend.library.presets import Preset
from backend.settings import EngineSettings, SamplingSettings

log = logging.getLogger(__name__)

SAVE_DELAY_MS = 300
PLAN_DELAY_MS = 250
LABEL_WIDTH = 104  # px; both forms share it so their editors line up
# Engine fields that only apply when the model is loaded again.
LOAD_FIELDS = frozenset({"n_ctx", "gpu_layers", "threads", "flash_attn", "kv_cache_type",
                         "parallel"})

SAMPLING_ROWS = (Row("temperature"), Row("top_p", "Top P"), Row("top_k", "Top K"),
                 Row("min_p", "Min P"), Row("repeat_penalty"),
                 Row("max_tokens", "Max reply tokens", fallback=1024),
                 Row("seed", fallback=42))
ENGINE_ROWS = (Row("n_ctx", "Context length", step=256),
               Row("gpu_layers", "GPU layers", fallback=0),
               Row("threads", "CPU threads", fallback=4),
               Row("flash_attn", "Flash attention"),
               Row("kv_cache_type", "KV cache type", choice_labels={
                   "f16": "f16 (full quality)", "q8_0": "q8_0 (about half the memory)",
                   "q4_0": "q4_0 (about a quarter)"}),
               Row("parallel", "Parallel replies"),
               Row("overflow", "When a chat is too long"))


class _Section(QWidget):
    """A titled block whose body folds away with a click on the title."""

    def __init__(self, title: str, body: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton(text=title, checkable=True, checked=True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.toggled.connect(self._fold)
        self.body = body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(self.toggle)
        layout.addWidget(body)

    def _fold(self, open_: bool) -> None:
        self.body.setVisible(open_)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)


class ParameterPanel(QScrollArea):
    load_settings_changed = Signal()  # a field that needs a reload changed
    problem = Signal(str)  # a sentence for the person: what went wrong, what to do
    preset_applied = Signal(str)  # the preset's name, after its values were applied

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._backend = backend
        self._model: str | None = None
        self._plan_generation = 0
        self._plan_task: asyncio.Future[None] | None = None
        self._dirty = False
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.flush)
        self._plan_timer = QTimer(self, singleShot=True, interval=PLAN_DELAY_MS)
        self._plan_timer.timeout.connect(self._start_plan)

        settings = backend.settings
        self.system_prompt = QPlainTextEdit(settings.chat.system_prompt)
        self.system_prompt.setPlaceholderText("e.g. You are a concise, friendly assistant.")
        self.system_prompt.setToolTip(type(settings.chat).model_fields["system_prompt"]
                                      .description or "")
        self.system_prompt.setFixedHeight(96)
        self.system_prompt.textChanged.connect(self._on_system_prompt)

        self.sampling = SettingsForm(lambda: self._backend.settings.sampling,
                                     self._put_sampling, SAMPLING_ROWS,
                                     label_width=LABEL_WIDTH)
        self.sampling.changed.connect(lambda _name: self._schedule_save())
        self.engine = SettingsForm(lambda: self._backend.settings.engine,
                                   self._put_engine, ENGINE_ROWS,
                                   label_width=LABEL_WIDTH)
        self.engine.changed.connect(self._on_engine_changed)
        # What Auto means before any plan arrives: the engine's own default, the core count.
        self.engine.editor("threads").set_fallback(psutil.cpu_count(logical=False) or 4)
        self.memory_bar = MemoryBar()
        self.presets = PresetSection(lambda: self._backend.settings, self._preset_base)
        self.presets.chosen.connect(self._apply)
        self.presets.saved.connect(self._on_preset_saved)
        self.presets.problem.connect(self.problem)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(_Section("System prompt", self.system_prompt))
        layout.addWidget(_Section("Presets", self.presets))
        layout.addWidget(_Section("Sampling", self.sampling))
        memory = QWidget()
        memory_layout = QVBoxLayout(memory)
        memory_layout.setContentsMargins(0, 0, 0, 0)
        memory_layout.addWidget(self.engine)
        memory_layout.addWidget(self.memory_bar)
        layout.addWidget(_Section("Context && memory", memory))
        layout.addStretch(1)
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(260)

    # -- public API -------------------------------------------------------------------------

    def set_model(self, name: str | None) -> None:
        """The model the memory bar plans for (and a new preset is based on)."""
        if name == self._model:
            return
        self._model = name
        if name is None:
            self._plan_generation += 1  # a plan still on its way is for another model
            self.memory_bar.set_message("Pick a model to see how it fits in memory.")
        else:
            self._plan_timer.start()

    def refresh(self) -> None:
        """Show ``backend.settings`` again (after something else changed it)."""
        self.sampling.refresh()
        self.engine.refresh()
        self.system_prompt.blockSignals(True)
        self.system_prompt.setPlainText(self._backend.settings.chat.system_prompt)
        self.system_prompt.blockSignals(False)
        self.presets.refresh(self._backend.settings.chat.preset)

    def flush(self) -> None:
        """Save pending changes now (also on hide and close)."""
        self._save_timer.stop()
        if not self._dirty:
            return
        self._dirty = False
        try:
            self._backend.save_settings()
        except OSError as exc:
            self._dirty = True  # try again with the next change, or on close
            self.problem.emit(f"Hearth couldn't save your settings ({exc.strerror or exc}). "
                              "They apply until Hearth closes; check that the disk has space.")

    def _preset_base(self) -> str:
        """The model a preset saved now is based on."""
        return (self._model or self._backend.settings.default_model
                or self._backend.starter_model_id)

    # -- edits ------------------------------------------------------------------------------

    def _put_sampling(self, value: BaseModel) -> None:
        assert isinstance(value, SamplingSettings)
        self._backend.settings.sampling = value

    def _put_engine(self, value: BaseModel) -> None:
        assert isinstance(value, EngineSettings)
        self._backend.settings.engine = value

    def _on_system_prompt(self) -> None:
        chat = self._backend.settings.chat
        self._backend.settings.chat = chat.model_copy(
            update={"system_prompt": self.system_prompt.toPlainText()})
        self._schedule_save()

    def _on_engine_changed(self, name: str) -> None:
        self._schedule_save()
        if name in LOAD_FIELDS:
            self.load_settings_changed.emit()
            if self._model is not None:
                self._plan_timer.start()  # restarts: one plan after a burst of edits

    def _schedule_save(self) -> None:
        self._dirty = True
        self._save_timer.start()

    # -- the memory bar ---------------------------------------------------------------------

    def _start_plan(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the window is closing and its event loop is gone
            return
        self._plan_task = self._replan()  # asyncSlot returns its task when called directly

    def shutdown(self) -> None:
        """The window is closing: save, and start no more plans."""
        self.flush()
        self._plan_timer.stop()
        if self._plan_task is not None:
            self._plan_task.cancel()

    @asyncSlot()
    async def _replan(self) -> None:
        name = self._model
        if name is None:
            return
        self._plan_generation += 1
        generation = self._plan_generation
        self.memory_bar.set_pending()
        try:
            plan = await asyncio.to_thread(self._backend.plan_for, name)
        except BackendError as exc:
            if self._current(generation):
                self.memory_bar.set_message(exc.user_message)
            return
        except Exception:  # the bar is advice: say it is missing rather than break the panel
            log.exception("planning %s failed", name)
            if self._current(generation):
                self.memory_bar.set_message("Hearth couldn't work out how this model fits; "
                                            "it can still try to load it.")
            return
        if not self._current(generation):
            return
        self.memory_bar.set_plan(plan)
        # Unticking Auto starts from what the planner would pick on this machine.
        self.engine.editor("gpu_layers").set_fallback(plan.n_gpu_layers)
        self.engine.editor("threads").set_fallback(plan.inputs.hardware.physical_cores)

    def _current(self, generation: int) -> bool:
        """Still alive, and no newer plan was asked for while this one ran."""
        return shiboken6.isValid(self) and generation == self._plan_generation

    # -- presets ----------------------------------------------------------------------------

    def _apply(self, preset: Preset) -> None:
        """Put a preset's parameters and system prompt into the settings, all or nothing."""
        settings = self._backend.settings
        try:
            sampling, engine, chat = preset_values(settings, preset)
        except ValidationError as exc:
            self.problem.emit(f"The preset '{preset.name}' has a value Hearth can't use "
                              f"({describe(exc)}); nothing was changed.")
            return
        reload = engine != settings.engine
        settings.sampling, settings.engine, settings.chat = sampling, engine, chat
        self.refresh()
        self._schedule_save()
        if reload:
            self.load_settings_changed.emit()
            if self._model is not None:
                self._plan_timer.start()
        self.preset_applied.emit(preset.name)

    def _on_preset_saved(self, name: str) -> None:
        settings = self._backend.settings
        settings.chat = settings.chat.model_copy(update={"preset": name})
        self._schedule_save()

    # -- lifetime ---------------------------------------------------------------------------

    def hideEvent(self, event: QHideEvent) -> None:
        self.flush()  # the dock closed, or the window is going away
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.flush()
        if self._plan_task is not None:
            self._plan_task.cancel()
        super().closeEvent(event)

