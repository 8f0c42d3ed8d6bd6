"""Presets as every front end uses them: list, find, make from a Modelfile, save the panel's
settings as one, apply one to the settings.

A preset is a base model with defaults (an Ollama Modelfile's FROM, PARAMETERs, SYSTEM,
TEMPLATE, MESSAGEs). ``hearth create``, the GUI's import and save, and ``POST /api/create``
all make theirs here, so they check the same things and store the same files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.engine.prepare import MAX_C_INT, check_request
from backend.engine.types import GenerationRequest, SamplingParams
from backend.errors import InvalidRequest
from backend.library.modelfile import Modelfile, parse_modelfile
from backend.library.preset_builder import build_preset
from backend.library.presets import Preset, delete_preset, find_preset, list_presets, save_preset
from backend.settings import Settings
from backend.settings_store import SettingsStore

# Preset parameters (Ollama names) that mean the same as a sampling setting.
SAMPLING_PARAMS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                   "presence_penalty", "frequency_penalty")
# Every preset parameter the panel writes; the rest (stop, repeat_last_n) a save keeps as is.
PANEL_PARAMS = frozenset({*SAMPLING_PARAMS, "seed", "num_predict", "num_ctx"})


class PresetBook:
    """Blocking calls (files): run them off a GUI thread."""

    def __init__(self, settings: SettingsStore) -> None:
        self._settings = settings

    def all(self) -> list[Preset]:
        return list_presets()

    def find(self, name: str) -> Preset | None:
        return find_preset(name)

    def delete(self, name: str) -> bool:
        return delete_preset(name)

    def create(self, name: str, modelfile: str | Modelfile, *, allow_paths: bool = False,
               relative_to: Path | None = None) -> tuple[Preset, list[str]]:
        """Make and save preset ``name`` from a Modelfile (its text or parsed); returns it and
        the warnings. ``allow_paths``: FROM may name a .gguf file (the CLI and the GUI's file
        import, never an API client); a relative one is taken from ``relative_to``, as Ollama
        does. Raises ``ModelfileError`` (naming the line), ``InvalidRequest``,
        ``ModelNotFound``, ``TemplateError``."""
        spec = parse_modelfile(modelfile) if isinstance(modelfile, str) else modelfile
        base = Path(spec.from_).expanduser()
        if relative_to is not None and not base.is_absolute() and (
                spec.from_.endswith(".gguf") or spec.from_.startswith(".")):
            spec = replace(spec, from_=str(relative_to / base))
        preset, warnings = build_preset(name, spec, allow_paths=allow_paths)
        check_parameters(preset)
        save_preset(preset)
        return preset, warnings

    def save_settings_as(self, name: str, base_model: str) -> tuple[Preset, list[str]]:
        """Save the current settings (sampling, context, system prompt) on ``base_model`` as
        preset ``name``. Replacing a preset keeps what the panel doesn't show (template, stop
        strings, seeded messages, licence)."""
        return self.create(name, modelfile_of(self._settings.snapshot(), base_model,
                                              find_preset(name)))

    def apply(self, preset: Preset) -> Settings:
        """Load ``preset`` into the settings (the parameters it names, its system prompt, and
        it as the active preset); returns the new snapshot."""
        try:
            return self._settings.update(lambda s: settings_with(s, preset))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(f"The preset '{preset.name}' has a value Hearth can't use: "
                                 f"{'.'.join(map(str, first['loc']))} {first['input']!r}: "
                                 f"{first['msg']}.") from None


def settings_with(settings: Settings, preset: Preset) -> Settings:
    """``settings`` with ``preset`` applied: its parameters (those it names; the others keep
    their values), its system prompt, and its name as the active preset."""
    params = preset.parameters
    sampling: dict[str, Any] = {k: params[k] for k in SAMPLING_PARAMS if k in params}
    if "seed" in params:  # Ollama's -1: random
        sampling["seed"] = params["seed"] if params["seed"] >= 0 else None
    if "num_predict" in params:  # Ollama's -1 (or -2): no limit
        sampling["max_tokens"] = params["num_predict"] if params["num_predict"] > 0 else None
    engine = {"n_ctx": params["num_ctx"]} if "num_ctx" in params else {}
    return Settings.model_validate({
        **settings.model_dump(),
        "sampling": {**settings.sampling.model_dump(), **sampling},
        "engine": {**settings.engine.model_dump(), **engine},
        "chat": {**settings.chat.model_dump(), "system_prompt": preset.system or "",
                 "preset": preset.name}})


def modelfile_of(settings: Settings, base: str, old: Preset | None) -> Modelfile:
    """The Modelfile of ``settings`` on ``base``; replacing ``old`` keeps what the panel
    doesn't show."""
    sampling = settings.sampling
    params = {k: v for k, v in (old.parameters if old else {}).items() if k not in PANEL_PARAMS}
    params |= {k: getattr(sampling, k) for k in SAMPLING_PARAMS}
    params |= {"seed": -1 if sampling.seed is None else sampling.seed,
               "num_predict": sampling.max_tokens or -1, "num_ctx": settings.engine.n_ctx}
    return Modelfile(base, system=settings.chat.system_prompt or None,
                     template=old.template if old else None,
                     license=old.license if old else None, parameters=params,
                     messages=tuple((m.role, m.content) for m in old.messages) if old else ())


# Whole-number parameters the engine's request check doesn't see (num_ctx and num_predict
# are not sampling values; a seed is 64-bit in both APIs): the same bounds as the APIs'.
_WHOLE_BOUNDS = {"num_ctx": (1, MAX_C_INT), "num_predict": (-2, MAX_C_INT),
                 "seed": (-(2**63), 2**64 - 1)}


def check_parameters(preset: Preset) -> None:
    """Refuse parameter values no request could run with (an infinite temperature, a
    thousand stop strings), now, rather than save a preset that fails on every later use.
    The same check every request passes (``check_request``), so the two can't disagree."""
    params = preset.parameters
    for key, (low, high) in _WHOLE_BOUNDS.items():
        value = params.get(key)
        if value is not None and (not isinstance(value, int) or not low <= value <= high):
            raise InvalidRequest(f"The preset '{preset.name}' was not saved: '{key}' must be "
                                 f"a whole number from {low:,} to {high:,}, not {value!r}.")
    fields = {k: v for k, v in params.items() if k in SamplingParams.__dataclass_fields__}
    if isinstance(fields.get("seed"), int) and fields["seed"] < 0:
        fields["seed"] = None  # Ollama's -1: random
    stop = params.get("stop") or ()
    request = GenerationRequest(prompt="", sampling=replace(SamplingParams(), **fields),
                                stop=tuple(stop) if isinstance(stop, list | tuple) else (stop,))
    try:
        check_request(request)
    except InvalidRequest as exc:
        raise InvalidRequest(f"The preset '{preset.name}' was not saved: "
                             f"{exc.user_message}") from None
