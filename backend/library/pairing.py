"""Pairing models with their vision projectors in the local library.

A model can see images when a projector (mmproj GGUF) is paired with it:
  * recorded: ``hearth import MODEL --mmproj PROJ`` (and the window's import) saves the pair
    in ``settings.library.projectors``; a record wins over anything found on disk;
  * beside it: a projector in the model's folder (a pull puts the one it fetched next to the
    model; a split model in a quant folder also looks one level up, in the repo's folder).
    With several there (f16 and q8_0, say), the preferred precision is used.

A pair is used only when the projector's header is a vision projector whose output width is
the model's ``n_embd``; otherwise the model stays text-only (logged, never an exception: a
listing must not fail because of one stray file). Verdicts live in the listing's check cache
(``local._with_problems``), so each file's header is read once per version.

Threading contract: plain functions; the caller holds the listing's cache lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from backend.errors import ModelLoadFailed
from backend.library.projector import read_projector
from backend.library.quants import is_model_gguf, is_projector_file, pick_local_projector

log = logging.getLogger(__name__)

_MAX_PROJECTORS_PER_FOLDER = 16  # a folder of hundreds of files is not where pairs live


def projectors_in(folder: Path) -> list[Path]:
    """The projector files directly in ``folder`` (none when it can't be read)."""
    try:
        found = [p for p in folder.iterdir() if is_projector_file(p.name) and p.is_file()]
    except OSError:
        return []
    return sorted(found)[:_MAX_PROJECTORS_PER_FOLDER]


def _file_version(path: Path, fmt: int) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [fmt, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def projector_width(path: Path, cache: dict[str, Any], fmt: int) -> int | None:
    """The projector's output width, or None when it is not a usable vision projector."""
    version = _file_version(path, fmt)
    if version is None:
        return None
    entry = cache.get(str(path))
    if not (isinstance(entry, dict) and entry.get("version") == version
            and "projection_dim" in entry):
        try:
            entry = {"version": version, "projection_dim": read_projector(path).projection_dim}
        except ModelLoadFailed as exc:
            entry = {"version": version, "projection_dim": None, "error": exc.user_message}
        cache[str(path)] = entry
    width = entry.get("projection_dim")
    return width if isinstance(width, int) else None


def find_projector(model_path: Path, source: str, n_embd: int | None,
                   recorded: Mapping[str, str], cache: dict[str, Any], fmt: int,
                   folders: dict[Path, list[Path]] | None = None) -> Path | None:
    """The projector to pair with the model at ``model_path`` (see the module docstring).
    ``folders``: each folder's projectors, kept for one listing (a folder of many models is
    read once)."""
    if source == "builtin" or not n_embd:
        return None
    folders = {} if folders is None else folders

    def beside(folder: Path) -> list[Path]:
        if folder not in folders:
            folders[folder] = projectors_in(folder)
        return folders[folder]

    explicit = recorded.get(os.fspath(model_path))
    if explicit is not None:
        candidates: Iterable[Path] = [Path(explicit)]
    else:
        candidates = beside(model_path.parent)
        if not candidates and source in ("library", "hf-cache"):
            candidates = beside(model_path.parent.parent)
    usable = [p for p in candidates if projector_width(p, cache, fmt) == n_embd]
    chosen = pick_local_projector(usable)
    if chosen is None and explicit is not None:
        log.warning("the projector recorded for %s (%s) is missing or doesn't match it",
                    model_path, explicit)
    return chosen


def drop_orphan_projectors(mmproj: Path | None, root: Path) -> None:
    """After a downloaded model was deleted: its folder's projectors go too when no model is
    left there to use them (never outside ``root``, the models folder)."""
    folder = mmproj.resolve().parent if mmproj else None
    if folder is None or root not in folder.parents or \
            any(is_model_gguf(p.name) for p in folder.rglob("*.gguf")):
        return
    for projector in projectors_in(folder):
        projector.unlink(missing_ok=True)
