"""Making a preset from a Modelfile: checks its name, its FROM and its TEMPLATE.

Apart from ``presets`` (which stores them) because it needs the model list, and the model list
(``local``) needs the stored presets to resolve a preset's name.
"""

from __future__ import annotations

import time
from pathlib import Path

from backend.engine.chat_template import ChatTemplate
from backend.engine.types import ChatMessage
from backend.errors import BackendError, InvalidRequest
from backend.library import local
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.modelfile import Modelfile
from backend.library.presets import (
    NAME_PATTERN,
    Preset,
    bad_name,
    find_preset,
    normalize_name,
    template_is_jinja,
)


def build_preset(name: str, spec: Modelfile, *, allow_paths: bool = False
                 ) -> tuple[Preset, list[str]]:
    """Check ``spec`` and make the preset ``name`` of it (not saved); also the warnings.

    Raises ``InvalidRequest`` for a bad name or template, or a FROM file that is not a
    readable GGUF model; ``ModelNotFound`` when FROM names nothing on this machine.
    ``allow_paths`` lets FROM be a .gguf path (the CLI only).
    """
    name = normalize_name(name)
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(bad_name(name))
    if any(m.id.lower() == name for m in local.list_models()):
        raise InvalidRequest(f"'{name}' is the name of a model; give the preset another name.")
    if normalize_name(spec.from_) == name:
        raise InvalidRequest(f"The preset '{name}' can't be made FROM itself.")
    warnings = list(spec.warnings)
    parent = find_preset(spec.from_)
    if parent is not None:  # FROM another preset: start from its values
        base = parent.base
    else:
        model = local.resolve_model(spec.from_, allow_paths=allow_paths)
        if model.source == "file":
            _check_base_file(model.path, spec.from_)
        base = str(model.path.resolve()) if model.source == "file" else model.id
    chat_template = parent.chat_template if parent else None
    if spec.template is not None:
        if template_is_jinja(spec.template):
            ChatTemplate(spec.template).render([ChatMessage("user", "hi")])  # TemplateError
            chat_template = spec.template
        else:
            warnings.append("TEMPLATE is an Ollama (Go) template, which Hearth can't run: it "
                            "is kept for reference, and the model's own chat template is "
                            "used. Write it as a Jinja chat template to change the format.")
    messages = tuple(ChatMessage(role, text) for role, text in spec.messages)  # type: ignore[arg-type]
    preset = Preset(
        name=name, base=base,
        system=spec.system if spec.system is not None else (parent.system if parent else None),
        template=spec.template if spec.template is not None else
        (parent.template if parent else None),
        chat_template=chat_template,
        license=spec.license if spec.license is not None else (parent.license if parent else None),
        parameters={**(parent.parameters if parent else {}), **spec.parameters},
        messages=messages or (parent.messages if parent else ()),
        created_at=time.time())
    return preset, warnings


def _check_base_file(path: Path, named: str) -> None:
    """A FROM that names a file must be a GGUF model whose header reads: a preset must never
    point Hearth at /etc/passwd, a device or a folder (which a later load would open)."""
    if path.suffix.lower() != ".gguf":
        raise InvalidRequest(f"FROM {named} is not a .gguf file. FROM takes a model name from "
                             "`hearth list` or the path of a .gguf model file.")
    if not path.is_file():
        raise InvalidRequest(f"FROM {named}: there is no model file there. Check the path, or "
                             "use a model name from `hearth list`.")
    try:
        meta = read_gguf_metadata(path)
    except BackendError as exc:
        raise InvalidRequest(f"FROM {named} can't be used: {exc.user_message}") from exc
    if meta.problem:
        raise InvalidRequest(f"FROM {named} can't be used: {meta.problem}")
