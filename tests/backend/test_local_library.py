"""The local library is rebuilt from disk; names never escape the models folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import InvalidRequest, ModelNotFound
from backend.library.local import STARTER_ID, delete_model, list_models, resolve_model
from backend.paths import hearth_paths


def _place(rel: str, size: int = 16) -> Path:
    path = hearth_paths().models_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * size)
    return path


def test_downloaded_models_are_named_like_a_pull() -> None:
    _place("bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    _place("bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q8_0.gguf")
    ids = {m.id for m in list_models()}
    assert "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M" in ids
    assert "bartowski/Llama-3.2-3B-Instruct-GGUF:Q8_0" in ids
    assert STARTER_ID in ids


def test_split_model_is_one_entry_with_all_parts() -> None:
    for i in (1, 2, 3):
        _place(f"o/Big-GGUF/Big-Q4_K_M-0000{i}-of-00003.gguf", size=100)
    models = [m for m in list_models() if m.repo == "o/Big-GGUF"]
    assert len(models) == 1
    assert models[0].path.name.endswith("00001-of-00003.gguf")
    assert len(models[0].parts) == 3 and models[0].size_bytes == 3 * 104


@pytest.mark.parametrize("name", [
    "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
    "bartowski/llama-3.2-3b-instruct-gguf:q4_k_m",
    "bartowski/Llama-3.2-3B-Instruct-GGUF",  # default quant
    "llama3.2:3b",  # catalog alias
])
def test_resolve_by_id_alias_or_repo(name: str) -> None:
    _place("bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    assert resolve_model(name).quant == "Q4_K_M"


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd.gguf", "..\\x.gguf",
                                  "a/../../b.gguf"])
def test_api_names_never_become_paths(name: str) -> None:
    with pytest.raises((InvalidRequest, ModelNotFound)):
        resolve_model(name)


def test_paths_are_accepted_only_where_allowed(tmp_path: Path) -> None:
    file = tmp_path / "mine.gguf"
    file.write_bytes(b"GGUF")
    assert resolve_model(str(file), allow_paths=True).path == file
    with pytest.raises((InvalidRequest, ModelNotFound)):
        resolve_model(str(file))


def test_unknown_name_lists_what_is_here() -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("llama3.1:8b")
    assert "hearth pull llama3.1:8b" in info.value.user_message
    assert STARTER_ID in info.value.user_message


def test_delete_removes_files_and_empty_folders_but_never_builtins() -> None:
    path = _place("o/r-GGUF/r-Q4_K_M.gguf")
    delete_model("o/r-GGUF:Q4_K_M")
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(InvalidRequest):
        delete_model(STARTER_ID)


def test_hf_cache_models_show_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct-GGUF" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "qwen2.5-0.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = resolve_model("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")
    assert model.source == "hf-cache" and not model.deletable


def test_folders_and_files_from_settings_are_used_in_place(tmp_path: Path) -> None:
    from backend.settings import LibrarySettings, Settings, save_settings

    folder, single = tmp_path / "my-models", tmp_path / "elsewhere" / "solo-Q8_0.gguf"
    folder.mkdir()
    (folder / "family-Q4_K_M.gguf").write_bytes(b"GGUF")
    single.parent.mkdir()
    single.write_bytes(b"GGUF")
    moved = tmp_path / "big-disk"
    save_settings(Settings(library=LibrarySettings(
        models_dir=str(moved), extra_folders=[str(folder)], extra_files=[str(single)])))
    (moved / "o" / "r-GGUF").mkdir(parents=True)
    (moved / "o" / "r-GGUF" / "r-Q4_K_M.gguf").write_bytes(b"GGUF")
    by_id = {m.id: m for m in list_models()}
    assert by_id["family-Q4_K_M"].source == "folder"
    assert by_id["solo-Q8_0"].source == "file" and not by_id["solo-Q8_0"].deletable
    assert by_id["o/r-GGUF:Q4_K_M"].path.parent.parent.parent == moved
