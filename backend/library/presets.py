"""Presets: a named base model with default settings, made from a Modelfile.

``hearth create NAME -f Modelfile`` and ``POST /api/create`` write one; the name then works as
a model name everywhere (``hearth run NAME``, ``/api/chat``, ``/v1/chat/completions``).
``resolve_model`` turns the name into its base model's file, and ``apply_preset`` (the one
place that knows what a preset means for a request) fills in its defaults under whatever the
request itself set. Each preset is one JSON file under ``config_dir/presets``, written
atomically; a preset of a preset is flattened when created, so ``base`` is always a model.

Presets are read from disk on every use (they are tiny), so one made by the CLI is live in a
running server at once. Safe from any thread: every write is a whole-file atomic replace.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backend.engine.types import ChatMessage, GenerationRequest, SamplingParams
from backend.errors import InvalidRequest
from backend.library.modelfile import render_modelfile
from backend.paths import hearth_paths
from backend.settings import write_json_atomic

log = logging.getLogger(__name__)

# Lower-case letters, digits, ".", "_", "-", and an optional ":tag". No "/": that spelling
# belongs to Hub models ("owner/repo:QUANT"), and a preset must never look like one.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}(:[a-z0-9][a-z0-9._-]{0,39})?$")
# File names Windows keeps for devices, whatever follows the first dot ("con.json" opens the
# console): a preset's file must never have one, on any system, so presets move freely.
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                              *(f"lpt{i}" for i in range(10))})
_SAMPLING_FIELDS = frozenset(SamplingParams.__dataclass_fields__)
# Request field names that mean "the client chose the reply length" in either API.
_LENGTH_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "num_predict"})
# Go templates refer to fields with a dot ({{ .System }}, {{ range .Messages }}); Jinja never
# does, and only Jinja has {% %} statements.
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(?:\.|(?:if|range|with|else if)\s+\.|end\b|else\b|"
                          r"template\b|block\b|define\b)")


@dataclass(frozen=True)
class Preset:
    name: str
    base: str  # a model id, or an absolute .gguf path when made by the CLI; never a preset
    system: str | None = None
    template: str | None = None  # TEMPLATE as written (Go or Jinja), for /api/show
    chat_template: str | None = None  # the Jinja the engine renders with; None: the model's
    license: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # Ollama names; "stop" a list
    messages: tuple[ChatMessage, ...] = ()  # seeded history, before the request's messages
    created_at: float = 0.0

    @property
    def modelfile(self) -> str:
        return render_modelfile(self.base, system=self.system, template=self.template,
                                license=self.license, parameters=self.parameters,
                                messages=tuple((m.role, m.content) for m in self.messages))


def normalize_name(name: str) -> str:
    """Names compare case-insensitively, and "x:latest" is "x", as in Ollama."""
    return name.strip().lower().removesuffix(":latest")


def presets_dir() -> Path:
    return hearth_paths().config_dir / "presets"


def _file_for(name: str) -> Path | None:
    name = normalize_name(name)
    if not NAME_PATTERN.match(name):
        return None
    return presets_dir() / f"{quote(name, safe='')}.json"  # ":" is not allowed on Windows


def find_preset(name: str) -> Preset | None:
    path = _file_for(name)
    if path is None or not path.is_file():
        return None
    return _read(path)


def list_presets() -> list[Preset]:
    folder = presets_dir()
    if not folder.is_dir():
        return []
    found = (_read(p) for p in sorted(folder.glob("*.json")))
    return [p for p in found if p is not None]


def delete_preset(name: str) -> bool:
    path = _file_for(name)
    if path is None or not path.is_file():
        return False
    path.unlink(missing_ok=True)
    return True


def save_preset(preset: Preset) -> None:
    path = _file_for(preset.name)
    if path is None:
        raise InvalidRequest(bad_name(preset.name))
    device = path.name.split(".", 1)[0]
    if device in _WINDOWS_DEVICES:
        raise InvalidRequest(f"'{preset.name}' can't be a preset name: Windows keeps the file "
                             f"name '{device}' for a device, so the preset could not be "
                             f"saved there. Pick another name, like '{device}-preset'.")
    write_json_atomic(path, {
        "version": 1, "name": preset.name, "base": preset.base, "system": preset.system,
        "template": preset.template, "chat_template": preset.chat_template,
        "license": preset.license, "parameters": preset.parameters,
        "messages": [{"role": m.role, "content": m.content} for m in preset.messages],
        "created_at": preset.created_at})


def _read(path: Path) -> Preset | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Preset(
            name=data["name"], base=data["base"], system=data.get("system"),
            template=data.get("template"), chat_template=data.get("chat_template"),
            license=data.get("license"), parameters=dict(data.get("parameters") or {}),
            messages=tuple(ChatMessage(m["role"], m["content"])
                           for m in data.get("messages") or ()),
            created_at=float(data.get("created_at") or path.stat().st_mtime))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # one bad file hides only itself
        log.warning("ignoring unreadable preset %s: %s", path, exc)
        return None


def bad_name(name: str) -> str:
    return (f"'{name}' can't be a preset name: use lower-case letters, digits, '.', '_' and "
            "'-', optionally with a ':tag' (like 'my-helper' or 'coder:short'), and no '/'.")


def template_is_jinja(template: str) -> bool:
    """True for Hugging Face (Jinja) chat templates; False for Ollama's Go templates."""
    return "{%" in template or ("{{" in template and not _GO_TEMPLATE.search(template))


def apply_preset(model: str, request: GenerationRequest,
                 explicit: Collection[str] = ()) -> GenerationRequest:
    """``request`` with the defaults of the preset ``model`` filled in; unchanged otherwise.

    ``explicit``: the request fields the client gave a value for, in OpenAI or Ollama
    spelling (``temperature``, ``max_tokens``/``num_predict``, ``stop``…); those win over the
    preset, and the preset wins over the user's saved defaults already in ``request``. The
    preset's system prompt is used when the request has none; its MESSAGE history goes first.
    ``num_ctx`` is not applied here: a request is served within the loaded context.
    """
    preset = find_preset(model)
    if preset is None:
        return request
    params = preset.parameters
    sampling = {k: v for k, v in params.items() if k in _SAMPLING_FIELDS and k not in explicit}
    if sampling.get("seed", 0) < 0:  # Ollama's -1: a random seed each time
        sampling["seed"] = None
    changes: dict[str, Any] = {"sampling": replace(request.sampling, **sampling)}
    if "num_predict" in params and not (_LENGTH_FIELDS & set(explicit)):
        changes["max_tokens"] = params["num_predict"] if params["num_predict"] > 0 else None
    if params.get("stop") and "stop" not in explicit and not request.stop:
        changes["stop"] = tuple(params["stop"])
    if request.messages is not None:
        given = request.messages
        has_system = any(m.role == "system" for m in given)
        head = [ChatMessage("system", preset.system)] if preset.system and not has_system \
            else []
        if has_system and given[0].role == "system":  # seeded turns go after the system turn
            head, given = [given[0]], given[1:]
        changes["messages"] = (*head, *preset.messages, *given)
        if request.chat_template is None and preset.chat_template:
            changes["chat_template"] = preset.chat_template
    return replace(request, **changes)
