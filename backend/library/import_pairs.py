"""Importing the files a person picked together: models, and vision projectors picked beside
them (the window's Import dialog and drops).

A projector (an mmproj .gguf) is not a model. Picked with the model it belongs to, it is
paired with it, as ``hearth import MODEL --mmproj PROJ`` does, so choosing both files is all
it takes to import a model that sees images: each model gets the projector whose output width
is its own. A projector picked without a model it fits is said, not imported as a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from backend.errors import BackendError
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.local import LocalModel
from backend.library.projector import ProjectorInfo, mismatch, read_projector


class Importer(Protocol):
    def import_file(self, path: Path | str, mmproj: Path | str | None = None
                    ) -> LocalModel: ...


@dataclass
class ImportOutcome:
    imported: list[LocalModel] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a sentence for each file refused


def _projector(path: Path) -> ProjectorInfo | None:
    try:
        return read_projector(path)
    except (BackendError, OSError):  # not a projector (a model, or not a GGUF at all)
        return None


def _fitting(model: Path, projectors: dict[Path, ProjectorInfo]) -> Path | None:
    """The picked projector that fits ``model``; None when none does (or the model can't be
    read: importing it says why)."""
    try:
        width = read_gguf_metadata(model).n_embd
    except (BackendError, OSError):
        return None
    return next((p for p, info in projectors.items() if mismatch(info, width) is None), None)


def import_together(library: Importer, paths: Sequence[Path]) -> ImportOutcome:
    """Blocking. Import every model in ``paths``, each paired with a projector picked with it
    when one fits; a bad file is refused with a sentence and doesn't stop the others."""
    projectors: dict[Path, ProjectorInfo] = {}
    models: list[Path] = []
    for path in paths:
        info = _projector(path) if path.suffix.lower() == ".gguf" else None
        if info is not None:
            projectors[path] = info
        else:
            models.append(path)
    outcome, used = ImportOutcome(), set()
    for model in models:
        mmproj = _fitting(model, projectors) if projectors else None
        try:
            outcome.imported.append(library.import_file(model, mmproj))
        except BackendError as exc:
            outcome.problems.append(exc.user_message)
            continue
        if mmproj is not None:
            used.add(mmproj)
    for path, info in projectors.items():
        if path not in used:
            outcome.problems.append(
                f"'{path.name}' is a vision projector, not a model: pick it together with the "
                f"model it belongs to (one {info.projection_dim:,} wide) to import the two as "
                "a pair.")
    return outcome
