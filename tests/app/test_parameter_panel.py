"""The parameter panel driven like a person would: real settings file, real presets, the real
planner on the starter model (no engine load needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import qasync
from pydantic import BaseModel, Field, model_validator
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QFileDialog, QInputDialog
from pytestqt.qtbot import QtBot

from app.views.memory_bar import bar_data
from app.views.parameter_panel import ParameterPanel
from app.views.settings_form import SettingsForm
from backend.api import Hearth, Verdict
from backend.settings import load_settings

STARTER = "smollm2:135m"
TIMEOUT_MS = 20_000




@pytest.fixture
def panel(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> ParameterPanel:
    panel = ParameterPanel(hearth)
    qtbot.addWidget(panel)
    panel.resize(300, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _spin(panel: ParameterPanel, form: str, name: str) -> QDoubleSpinBox:
    editor = getattr(panel, form).editor(name).editor
    assert isinstance(editor, QDoubleSpinBox)
    return editor


def test_editors_take_their_bounds_from_the_pydantic_fields(panel: ParameterPanel) -> None:
    temperature = _spin(panel, "sampling", "temperature")
    top_p = _spin(panel, "advanced", "top_p")  # folded, but there
    assert (temperature.minimum(), temperature.maximum()) == (0.0, 2.0)
    assert top_p.maximum() == 1.0
    assert temperature.value() == pytest.approx(0.8)
    assert "greedy" in temperature.toolTip()  # the field's description
    n_ctx = panel.engine.editor("n_ctx").editor
    assert (n_ctx.minimum(), n_ctx.value()) == (256, 4096)  # type: ignore[attr-defined]


def test_temperature_and_system_prompt_persist(qtbot: QtBot, panel: ParameterPanel,
                                               hearth: Hearth) -> None:
    _spin(panel, "sampling", "temperature").setValue(0.35)
    assert hearth.settings.snapshot().sampling.temperature == pytest.approx(0.35)  # at once
    assert load_settings().sampling.temperature == pytest.approx(0.35)  # and saved
    qtbot.keyClicks(panel.system_prompt, "Answer like a pirate.")
    # Typed a key at a time: saved once, shortly after the last keystroke.
    qtbot.waitUntil(lambda: load_settings().chat.system_prompt == "Answer like a pirate.",
                    timeout=2000)
    assert hearth.settings.snapshot().chat.system_prompt == "Answer like a pirate."


def test_hiding_the_panel_saves_at_once(qtbot: QtBot, panel: ParameterPanel) -> None:
    _spin(panel, "advanced", "min_p").setValue(0.2)
    qtbot.keyClicks(panel.system_prompt, "Be kind.")
    panel.hide()  # the dock was closed: nothing may wait for a timer
    saved = load_settings()
    assert saved.sampling.min_p == pytest.approx(0.2)
    assert saved.chat.system_prompt == "Be kind."


def test_auto_checkbox_means_none(qtbot: QtBot, panel: ParameterPanel,
                                  hearth: Hearth) -> None:
    layers = panel.engine.editor("gpu_layers")
    assert hearth.settings.snapshot().engine.gpu_layers is None
    assert isinstance(layers.none_box, QCheckBox) and layers.none_box.text() == "Auto"
    assert layers.none_box.isChecked() and not layers.editor.isEnabled()
    layers.none_box.setChecked(False)
    assert hearth.settings.snapshot().engine.gpu_layers == 0
    layers.editor.setValue(7)  # type: ignore[attr-defined]
    assert hearth.settings.snapshot().engine.gpu_layers == 7
    layers.none_box.setChecked(True)
    assert hearth.settings.snapshot().engine.gpu_layers is None
    seed = panel.advanced.editor("seed")
    assert seed.none_box is not None and seed.none_box.text() == "Random"


def test_only_load_fields_ask_for_a_reload(qtbot: QtBot, panel: ParameterPanel,
                                           hearth: Hearth) -> None:
    with qtbot.assertNotEmitted(panel.load_settings_changed):
        _spin(panel, "sampling", "temperature").setValue(1.1)
    with qtbot.waitSignal(panel.load_settings_changed, timeout=1000):
        panel.engine.editor("n_ctx").editor.setValue(2048)  # type: ignore[attr-defined]
    assert hearth.settings.snapshot().engine.n_ctx == 2048
    with qtbot.waitSignal(panel.load_settings_changed, timeout=1000):
        kv = panel.engine.editor("kv_cache_type").editor
        kv.setCurrentIndex(kv.findData("q8_0"))  # type: ignore[attr-defined]
    assert hearth.settings.snapshot().engine.kv_cache_type == "q8_0"
    with qtbot.assertNotEmitted(panel.load_settings_changed):
        overflow = panel.engine.editor("overflow").editor
        overflow.setCurrentIndex(overflow.findData("stop"))  # type: ignore[attr-defined]
    assert hearth.settings.snapshot().engine.overflow == "stop"


def test_an_invalid_value_keeps_the_previous_one_and_says_why(qtbot: QtBot) -> None:
    class Pair(BaseModel):
        low: int = Field(1, ge=0, le=10)
        high: int = Field(5, ge=0, le=10)

        @model_validator(mode="after")
        def ordered(self) -> Pair:
            if self.low > self.high:
                raise ValueError("low must not exceed high")
            return self

    holder = {"value": Pair()}
    form = SettingsForm(lambda: holder["value"], lambda v: holder.update(value=v),
                        ["low", "high"])
    qtbot.addWidget(form)
    form.show()
    low = form.editor("low")
    low.editor.setValue(8)  # type: ignore[attr-defined]
    assert holder["value"].low == 1
    assert low.value() == 1
    assert "low must not exceed high" in low.problem.text() and low.problem.isVisible()
    low.editor.setValue(3)  # type: ignore[attr-defined]
    assert holder["value"].low == 3 and not low.problem.isVisible()


def test_save_a_preset_and_load_it_back(qtbot: QtBot, panel: ParameterPanel,
                                        hearth: Hearth) -> None:
    panel.set_model(STARTER)
    _spin(panel, "sampling", "temperature").setValue(0.25)
    panel.system_prompt.setPlainText("Be brief.")
    with qtbot.waitSignal(panel.presets.combo.model().rowsInserted, timeout=TIMEOUT_MS):
        panel.presets.save_preset_as("brief")
    assert panel.presets.combo.findText("brief") >= 0
    saved = hearth.presets.find("brief")
    assert saved is not None and saved.base == STARTER
    assert saved.parameters["temperature"] == pytest.approx(0.25)

    _spin(panel, "sampling", "temperature").setValue(1.5)
    panel.system_prompt.setPlainText("Be long-winded.")
    panel.presets.combo.setCurrentIndex(panel.presets.combo.findText("brief"))
    with qtbot.waitSignal(panel.preset_applied, timeout=1000):
        qtbot.mouseClick(panel.presets.load_button, Qt.MouseButton.LeftButton)
    assert hearth.settings.snapshot().sampling.temperature == pytest.approx(0.25)
    assert _spin(panel, "sampling", "temperature").value() == pytest.approx(0.25)
    assert panel.system_prompt.toPlainText() == "Be brief."
    assert hearth.settings.snapshot().chat.preset == "brief"


def test_import_a_modelfile_applies_it(qtbot: QtBot, panel: ParameterPanel, hearth: Hearth,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modelfile = tmp_path / "terse" / "Modelfile"
    modelfile.parent.mkdir()
    modelfile.write_text(f'FROM {STARTER}\nSYSTEM """You are terse."""\n'
                         "PARAMETER temperature 0.3\nPARAMETER num_ctx 2048\n", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(modelfile), "")))
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, text="", **k: (text, True)))
    with qtbot.waitSignal(panel.preset_applied, timeout=TIMEOUT_MS) as applied, \
            qtbot.waitSignal(panel.load_settings_changed, timeout=TIMEOUT_MS):
        qtbot.mouseClick(panel.presets.import_button, Qt.MouseButton.LeftButton)
    assert applied.args == ["terse"]  # named after the Modelfile's folder
    assert hearth.settings.snapshot().sampling.temperature == pytest.approx(0.3)
    assert hearth.settings.snapshot().engine.n_ctx == 2048
    assert hearth.settings.snapshot().chat.system_prompt == "You are terse."
    assert panel.system_prompt.toPlainText() == "You are terse."
    assert panel.engine.editor("n_ctx").value() == 2048
    assert panel.presets.combo.currentText() == "terse"
    panel.flush()
    assert load_settings().engine.n_ctx == 2048


def test_a_broken_modelfile_is_reported_with_its_line(qtbot: QtBot, panel: ParameterPanel,
                                                      hearth: Hearth, tmp_path: Path) -> None:
    modelfile = tmp_path / "broken.modelfile"
    modelfile.write_text(f"FROM {STARTER}\nPARAMETER temperature 0.3\nPARAMETR top_k 5\n",
                         encoding="utf-8")
    with qtbot.waitSignal(panel.problem, timeout=TIMEOUT_MS) as problem:
        panel.presets.import_modelfile(str(modelfile), "broken")
    assert "line 3" in problem.args[0] and "PARAMETR" in problem.args[0]
    assert hearth.presets.find("broken") is None
    assert hearth.settings.snapshot().sampling.temperature == pytest.approx(0.8)  # nothing applied


def test_memory_bar_shows_a_real_plan_for_the_starter_model(
        qtbot: QtBot, panel: ParameterPanel, hearth: Hearth) -> None:
    panel.set_model(STARTER)
    qtbot.waitUntil(lambda: panel.memory_bar.plan is not None, timeout=TIMEOUT_MS)
    plan = panel.memory_bar.plan
    assert plan is not None
    if not hearth.hardware.usable_gpus:
        assert plan.verdict is Verdict.CPU
    data = panel.memory_bar.data()
    assert data is not None and data == bar_data(plan)
    assert all(s.bytes > 0 for s in data.segments[:3])  # weights, KV cache, compute
    assert 0 < data.used < data.free
    assert panel.memory_bar.reason.text() == plan.reason
    first_kv = data.segments[1].bytes

    # A load field changes the plan (after the debounce, off the GUI thread).
    panel.engine.editor("n_ctx").editor.setValue(8192)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: panel.memory_bar.plan is not None
                    and panel.memory_bar.plan.n_ctx == 8192, timeout=TIMEOUT_MS)
    data = panel.memory_bar.data()
    assert data is not None and data.segments[1].bytes > first_kv
    panel.grab()  # paints the bar and legend without errors


def test_the_panel_fits_the_dock_width(panel: ParameterPanel) -> None:
    panel.resize(300, 800)
    content = panel.widget()
    assert content.minimumSizeHint().width() <= 300


def test_replacing_a_preset_keeps_what_the_panel_does_not_show(
        qtbot: QtBot, panel: ParameterPanel, hearth: Hearth, tmp_path: Path) -> None:
    modelfile = tmp_path / "helper.modelfile"
    modelfile.write_text(f'FROM {STARTER}\nPARAMETER stop "<|im_end|>"\nPARAMETER seed -1\n'
                         "PARAMETER num_predict 200\nMESSAGE user Hi\nMESSAGE assistant Hello!\n",
                         encoding="utf-8")
    with qtbot.waitSignal(panel.preset_applied, timeout=TIMEOUT_MS):
        panel.presets.import_modelfile(str(modelfile), "helper")
    assert hearth.settings.snapshot().sampling.seed is None  # Ollama's -1: random
    assert hearth.settings.snapshot().sampling.max_tokens == 200
    _spin(panel, "advanced", "top_p").setValue(0.5)
    with qtbot.waitSignal(panel.presets.saved, timeout=TIMEOUT_MS):
        panel.presets.save_preset_as("helper")
    saved = hearth.presets.find("helper")
    assert saved is not None
    assert saved.parameters["top_p"] == pytest.approx(0.5)
    assert saved.parameters["stop"] == ["<|im_end|>"]
    assert [m.content for m in saved.messages] == ["Hi", "Hello!"]


def test_basic_sampling_shows_advanced_and_memory_fold(panel: ParameterPanel) -> None:
    assert panel.sampling.isVisibleTo(panel)
    assert set(panel.sampling.editors) == {"temperature", "max_tokens"}
    assert not panel.advanced.isVisibleTo(panel) and not panel.engine.isVisibleTo(panel)
    assert "top_k" in panel.advanced.editors


def test_a_load_setting_says_it_applies_to_the_next_message(
        qtbot: QtBot, panel: ParameterPanel, hearth: Hearth,
        qasync_loop: qasync.QEventLoop) -> None:
    loaded = qasync_loop.create_task(hearth.load(STARTER))
    qtbot.waitUntil(loaded.done, timeout=TIMEOUT_MS)
    assert not panel.reload_note.isVisibleTo(panel)
    panel.engine.editor("n_ctx").editor.setValue(2048)  # type: ignore[attr-defined]
    assert panel.reload_note.isVisibleTo(panel)
    assert "next message" in panel.reload_note.text()
    panel.engine.editor("n_ctx").editor.setValue(4096)  # type: ignore[attr-defined]
    assert not panel.reload_note.isVisibleTo(panel)  # back as loaded: nothing pending


def test_the_system_prompt_shown_is_the_chats(qtbot: QtBot, panel: ParameterPanel,
                                              hearth: Hearth) -> None:
    edited: list[str] = []
    panel.system_prompt_edited.connect(edited.append)
    panel.show_system_prompt("This chat's prompt.")
    assert panel.system_prompt.toPlainText() == "This chat's prompt." and edited == []
    _spin(panel, "sampling", "temperature").setValue(1.2)  # another setting changes…
    qtbot.wait(20)
    assert panel.system_prompt.toPlainText() == "This chat's prompt."  # …the prompt stays
    qtbot.keyClicks(panel.system_prompt, " More.")
    panel.flush()
    assert edited == ["This chat's prompt. More."]
    assert hearth.settings.snapshot().chat.system_prompt == "This chat's prompt. More."


def test_speculative_decoding_is_set_in_the_panel(qtbot: QtBot, panel: ParameterPanel,
                                                  hearth: Hearth) -> None:
    """The mode applies to the next message; a draft model needs a reload (it is loaded
    beside the model, and its vocabulary checked there)."""
    mode = panel.engine.editor("speculative").editor
    assert mode.currentData() == "auto"  # type: ignore[attr-defined]
    with qtbot.assertNotEmitted(panel.load_settings_changed):
        mode.setCurrentIndex(mode.findData("ngram"))  # type: ignore[attr-defined]
    assert hearth.settings.snapshot().engine.speculative == "ngram"
    draft = panel.engine.editor("draft_model")
    assert draft.none_box is not None and draft.none_box.text() == "None"
    assert draft.none_box.isChecked()
    with qtbot.waitSignal(panel.load_settings_changed, timeout=1000):
        draft.none_box.setChecked(False)
        draft.editor.setText("qwen2.5:0.5b")  # type: ignore[attr-defined]
        draft.editor.editingFinished.emit()  # type: ignore[attr-defined]
    assert load_settings().engine.draft_model == "qwen2.5:0.5b"


def test_the_draft_field_offers_the_catalogs_suggestion(
        qtbot: QtBot, panel: ParameterPanel, hearth: Hearth,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.api import DraftSuggestion

    suggestion = DraftSuggestion("smollm2:135m", installed=True)
    monkeypatch.setattr(hearth, "draft_suggestion", lambda name: suggestion)
    panel.set_model(STARTER)
    draft = panel.engine.editor("draft_model")
    qtbot.waitUntil(lambda: "Suggested" in draft.editor.toolTip(), timeout=TIMEOUT_MS)
    assert draft.editor.placeholderText() == "Suggested: smollm2:135m"  # type: ignore[attr-defined]
    assert suggestion.advice() in draft.editor.toolTip()
    assert draft.none_box is not None
    draft.none_box.setChecked(False)  # unticking None starts from the suggestion
    assert draft.editor.text() == "smollm2:135m"  # type: ignore[attr-defined]
