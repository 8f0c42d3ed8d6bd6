"""The chat's parameter panel: system prompt, presets, sampling, context & memory, memory bar.

Every finished edit is one ``hearth.settings.update()``: validated, saved and in effect for
the next message at once. The basic sampling fields show; the advanced ones and context &
memory are folded until opened. The panel follows the store's ``changes()``, so a change made
elsewhere (a preset applied, another part of the app) shows up in its editors.

The system prompt is the shown chat's: ``show_system_prompt`` puts a chat's in the editor, and
an edit is emitted as ``system_prompt_edited`` for that chat (and kept as the default for new
chats). Edited a keystroke at a time, it is applied 300 ms after the last one, and at once
when the panel is hidden or closed, before a reply reads it and before another chat is shown
(``flush``).

Edits that only take effect on the next load (context, GPU layers, threads, flash attention,
KV cache type, parallel slots) emit ``load_settings_changed``, show "applies to the next
message" while the loaded model still runs with the old values (the chat reloads it before
its next message), and re-plan the memory bar, debounced; the plan is computed with
``asyncio.to_thread`` because it reads the GGUF header and probes the hardware. Failures are
emitted as ``problem`` (one sentence for a banner).

GUI thread only. Needs a running qasync loop for the async slots (planning, presets).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psutil
import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QHideEvent, QTextCursor
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.streams import StreamReader
from app.views.memory_bar import MemoryBar
from app.views.preset_section import PresetSection
from app.views.settings_form import Row, SettingsForm
from backend.api import Hearth, Preset, Settings
from backend.errors import BackendError

log = logging.getLogger(__name__)

SAVE_DELAY_MS = 300
PLAN_DELAY_MS = 250
LABEL_WIDTH = 104  # px; both forms share it so their editors line up
# Engine fields that only apply when the model is loaded again.
LOAD_FIELDS = frozenset({"n_ctx", "gpu_layers", "threads", "flash_attn", "kv_cache_type",
                         "parallel", "draft_model"})

SAMPLING_ROWS = (Row("temperature"), Row("max_tokens", "Max reply tokens", fallback=1024))
ADVANCED_ROWS = (Row("top_p", "Top P"), Row("top_k", "Top K"), Row("min_p", "Min P"),
                 Row("repeat_penalty"), Row("seed", fallback=42))
RELOAD_NOTE = ("Applies to the next message: the model reloads with these settings before "
               "it answers.")
ENGINE_ROWS = (Row("n_ctx", "Context length", step=256),
               Row("gpu_layers", "GPU layers", fallback=0),
               Row("threads", "CPU threads", fallback=4),
               Row("flash_attn", "Flash attention"),
               Row("kv_cache_type", "KV cache type", choice_labels={
                   "f16": "f16 (full quality)", "q8_0": "q8_0 (about half the memory)",
                   "q4_0": "q4_0 (about a quarter)"}),
               Row("parallel", "Parallel replies"),
               Row("overflow", "When a chat is too long"),
               # The mode applies to the next message; a draft model is loaded beside the
               # model (a reload), and refused at the load, with the reason, if its
               # vocabulary differs.
               Row("speculative", "Speculative decoding", choice_labels={
                   "auto": "Auto (when it pays)", "off": "Off",
                   "ngram": "From the chat's own text", "draft": "Draft model"}),
               Row("draft_model", "Draft model", none_label="None"))


class _Section(QWidget):
    """A titled block whose body folds away with a click on the title."""

    def __init__(self, title: str, body: QWidget, parent: QWidget | None = None, *,
                 folded: bool = False) -> None:
        super().__init__(parent)
        self.toggle = QToolButton(text=title, checkable=True, checked=True)
        self.toggle.setAccessibleName(title.replace("&&", "&"))
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.toggled.connect(self._fold)
        self.body = body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(self.toggle)
        layout.addWidget(body)
        self.toggle.setChecked(not folded)

    def _fold(self, open_: bool) -> None:
        self.body.setVisible(open_)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)


class ParameterPanel(QScrollArea):
    load_settings_changed = Signal()  # a field that needs a reload changed
    system_prompt_edited = Signal(str)  # the shown chat's prompt, as edited here
    problem = Signal(str)  # a sentence for the person: what went wrong, what to do
    preset_applied = Signal(str)  # the preset's name, after its values were applied

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._store = hearth.settings
        self._shown: Settings = self._store.snapshot()  # what the editors show
        self._model: str | None = None
        self._plan_generation = 0
        self._plan_task: asyncio.Future[None] | None = None
        self._prompt_typed = False  # the system prompt has keystrokes not yet applied
        self._prompt_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._prompt_timer.timeout.connect(self.flush)
        self._plan_timer = QTimer(self, singleShot=True, interval=PLAN_DELAY_MS)
        self._plan_timer.timeout.connect(self._start_plan)

        settings = self._shown
        self.system_prompt = QPlainTextEdit(settings.chat.system_prompt)
        self.system_prompt.setPlaceholderText("e.g. You are a concise, friendly assistant.")
        self.system_prompt.setToolTip(type(settings.chat).model_fields["system_prompt"]
                                      .description or "")
        self.system_prompt.setToolTip("This chat's instructions to the model; new chats start "
                                      "with the last ones written.")
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setTabChangesFocus(True)
        self.system_prompt.setFixedHeight(96)
        self.system_prompt.textChanged.connect(self._on_system_prompt)

        self.sampling = SettingsForm(lambda: self._store.snapshot().sampling,
                                     lambda value: self._put(sampling=value), SAMPLING_ROWS,
                                     label_width=LABEL_WIDTH)
        self.advanced = SettingsForm(lambda: self._store.snapshot().sampling,
                                     lambda value: self._put(sampling=value), ADVANCED_ROWS,
                                     label_width=LABEL_WIDTH)
        self.engine = SettingsForm(lambda: self._store.snapshot().engine,
                                   lambda value: self._put(engine=value), ENGINE_ROWS,
                                   label_width=LABEL_WIDTH)
        self.engine.changed.connect(self._on_engine_changed)
        # What Auto means before any plan arrives: the engine's own default, the core count.
        self.engine.editor("threads").set_fallback(psutil.cpu_count(logical=False) or 4)
        self.memory_bar = MemoryBar()
        self.reload_note = QLabel(RELOAD_NOTE)
        self.reload_note.setObjectName("reload_note")
        self.reload_note.setWordWrap(True)
        self.reload_note.hide()
        self.presets = PresetSection(hearth.presets, settings.chat.preset, self._preset_base,
                                     self.flush)
        self.presets.chosen.connect(self._apply)
        self.presets.saved.connect(lambda name: self._put(chat={"preset": name}))
        self.presets.problem.connect(self.problem)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(_Section("System prompt", self.system_prompt))
        layout.addWidget(_Section("Presets", self.presets))
        layout.addWidget(_Section("Sampling", self.sampling))
        layout.addWidget(_Section("Advanced sampling", self.advanced, folded=True))
        memory = QWidget()
        memory_layout = QVBoxLayout(memory)
        memory_layout.setContentsMargins(0, 0, 0, 0)
        memory_layout.addWidget(self.engine)
        memory_layout.addWidget(self.memory_bar)
        # Outside the fold: a pending reload is said even with the section closed.
        layout.addWidget(self.reload_note)
        layout.addWidget(_Section("Context && memory", memory, folded=True))
        layout.addStretch(1)
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Not a Tab stop of its own: it had no name and drew no ring, so Tab seemed to vanish
        # for a press; the fields inside are the stops, and it scrolls to whichever has focus.
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumWidth(260)
        self._streams = StreamReader(self)
        self._streams.read(self._store.changes, lambda _snapshot: self._follow())

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

    def flush(self) -> None:
        """Apply the system prompt being typed now (also on hide and close, before a reply
        reads it and before another chat is shown)."""
        self._prompt_timer.stop()
        if not self._prompt_typed:
            return
        self._prompt_typed = False
        text = self.system_prompt.toPlainText()
        self.system_prompt_edited.emit(text)  # the shown chat's
        if not self._put(chat={"system_prompt": text}):  # and the default for new ones
            self._prompt_typed = True  # try again with the next keystroke, or on close

    def show_system_prompt(self, text: str) -> None:
        """Another chat is shown: its prompt (what was typed for the last one was flushed)."""
        self._prompt_typed = False
        self._prompt_timer.stop()
        self.system_prompt.blockSignals(True)
        self.system_prompt.setPlainText(text)
        self.system_prompt.moveCursor(QTextCursor.MoveOperation.End)  # typing adds to it
        self.system_prompt.blockSignals(False)

    def show_reload_pending(self) -> None:
        """Say whether load settings wait for a reload (the loaded model runs with others)."""
        self.reload_note.setVisible(self._hearth.load_settings_changed())

    def _preset_base(self) -> str:
        """The model a preset saved now is based on."""
        return (self._model or self._store.snapshot().default_model
                or self._hearth.starter_model_id)

    # -- edits ------------------------------------------------------------------------------

    def _put(self, **sections: Any) -> bool:
        """One change to the settings store; False (and a sentence) when it wasn't saved."""
        try:
            self._shown = self._store.update(**sections)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            return False
        except OSError as exc:
            self.problem.emit(f"Hearth couldn't save your settings ({exc.strerror or exc}), so "
                              "that change was not made; check that the disk has space.")
            return False
        return True

    def _on_system_prompt(self) -> None:
        self._prompt_typed = True
        self._prompt_timer.start()  # restarts: one update after a burst of keystrokes

    def _on_engine_changed(self, name: str) -> None:
        if name in LOAD_FIELDS:
            self._load_fields_changed()

    def _load_fields_changed(self) -> None:
        self.load_settings_changed.emit()
        self.show_reload_pending()
        if self._model is not None:
            self._plan_timer.start()  # restarts: one plan after a burst of edits

    def _follow(self) -> None:
        """The settings changed (here or elsewhere): show whatever differs from the editors.
        Reads the latest snapshot, so a burst of changes is one refresh, never a step back."""
        before, now = self._shown, self._store.snapshot()
        self._shown = now
        if now.sampling != before.sampling:
            self.sampling.refresh()
            self.advanced.refresh()
        if now.engine != before.engine:
            self.engine.refresh()
            if any(getattr(now.engine, f) != getattr(before.engine, f) for f in LOAD_FIELDS):
                self._load_fields_changed()
        # Only a new default from elsewhere (a preset applied) replaces the chat's prompt
        # shown here; any other settings change leaves the shown chat's prompt alone.
        if now.chat.system_prompt != before.chat.system_prompt and not self._prompt_typed \
                and self.system_prompt.toPlainText() != now.chat.system_prompt:
            self.show_system_prompt(now.chat.system_prompt)
            self.system_prompt_edited.emit(now.chat.system_prompt)
        if now.chat.preset != before.chat.preset:
            self.presets.refresh(now.chat.preset)

    # -- the memory bar ---------------------------------------------------------------------

    def _start_plan(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the window is closing and its event loop is gone
            return
        self._plan_task = self._replan()  # asyncSlot returns its task when called directly

    def shutdown(self) -> None:
        """The window is closing: apply what was typed, and start no more plans."""
        self.flush()
        self._streams.close()
        self._plan_timer.stop()
        if self._plan_task is not None:
            self._plan_task.cancel()

    @asyncSlot()
    async def _replan(self) -> None:
        name = self._model
        # A task started just before the window closed may run after its widgets are gone.
        if name is None or not shiboken6.isValid(self.memory_bar.caption):
            return
        self._plan_generation += 1
        generation = self._plan_generation
        self.memory_bar.set_pending()
        try:
            plan = await asyncio.to_thread(self._hearth.plan_for, name)
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
        await self._suggest_draft(name, generation)

    async def _suggest_draft(self, name: str, generation: int) -> None:
        """The catalog's draft model for ``name``: what unticking None offers, and said in
        the field's tooltip (installed or how to get it)."""
        try:
            draft = await asyncio.to_thread(self._hearth.draft_suggestion, name)
        except BackendError:
            draft = None
        if not self._current(generation):
            return
        field = self.engine.editor("draft_model")
        field.set_fallback(draft.name if draft else None)
        if isinstance(field.editor, QLineEdit):
            field.editor.setPlaceholderText(f"Suggested: {draft.name}" if draft else "")
        tip = (f"Suggested for {name}: {draft.name}. {draft.advice()}" if draft
               else "A small model with the same vocabulary that drafts tokens for this one; "
               "the catalog suggests none for this model.")
        for widget in (field.editor, field.none_box):
            if widget is not None:
                widget.setToolTip(tip)

    def _current(self, generation: int) -> bool:
        """Still alive, and no newer plan was asked for while this one ran."""
        return shiboken6.isValid(self) and generation == self._plan_generation

    # -- presets ----------------------------------------------------------------------------

    def _apply(self, preset: Preset) -> None:
        """Put a preset's parameters and system prompt into the settings, all or nothing."""
        typed, self._prompt_typed = self._prompt_typed, False  # the preset's prompt wins
        self._prompt_timer.stop()
        before = self._store.snapshot()
        try:
            self._shown = self._hearth.presets.apply(preset)
        except BackendError as exc:
            self._prompt_typed = typed
            self.problem.emit(f"{exc.user_message} Nothing was changed.")
            return
        except OSError as exc:
            self._prompt_typed = typed
            self.problem.emit(f"Hearth couldn't save your settings ({exc.strerror or exc}); "
                              f"the preset '{preset.name}' was not applied.")
            return
        now = self._shown
        self.sampling.refresh()
        self.advanced.refresh()
        self.engine.refresh()
        self.show_system_prompt(now.chat.system_prompt)
        self.system_prompt_edited.emit(now.chat.system_prompt)  # the shown chat takes it
        self.presets.refresh(now.chat.preset)
        if now.engine != before.engine:
            self._load_fields_changed()
        self.preset_applied.emit(preset.name)

    # -- lifetime ---------------------------------------------------------------------------

    def hideEvent(self, event: QHideEvent) -> None:
        self.flush()  # the dock closed, or the window is going away
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.flush()
        if self._plan_task is not None:
            self._plan_task.cancel()
        super().closeEvent(event)
