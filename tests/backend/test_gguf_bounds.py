"""Every reader of GGUF metadata turns a bad file into one typed error with a sentence: a
truncated download is never listed as usable nor handed to llama.cpp, headers that would
abort llama.cpp are refused first, files without a quant get ids of their own, a preset's
FROM must be a real GGUF file, and the planner survives absurd shapes."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from backend.cli import main as hearth
from backend.engine.model_file import check_gguf_file
from backend.errors import BackendError, InvalidRequest, ModelLoadFailed
from backend.hardware.planner import PlanRequest, next_smaller_plan, plan_offload
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library import gguf_meta
from backend.library.gguf_meta import read_gguf_metadata, read_gguf_metadata_from_range
from backend.library.local import list_models, resolve_model
from backend.library.modelfile import parse_modelfile
from backend.library.preset_builder import build_preset
from backend.library.service import LibraryService
from backend.load_plans import planned_loads
from backend.paths import hearth_paths
from backend.settings import EngineSettings, Settings
from tests.backend.gguf_crafting import STRING, UINT32, VirtualFile, read_header, write_header

HARDWARE = Hardware("Test CPU", 8, 32 * GiB, 16 * GiB,
                    (GpuInfo(0, "Test GPU", 8 * GiB, 8 * GiB, "cuda"),),
                    gpu_offload_supported=True)


def _in_library(rel: str) -> Path:
    path = hearth_paths().models_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _truncated_copy(good: Path, dest: Path, missing: int = 1 << 20) -> Path:
    """The header intact, the last ``missing`` bytes of tensor data gone."""
    with good.open("rb") as src:
        dest.write_bytes(src.read(good.stat().st_size - missing))
    return dest


def _linked_copy(good: Path, dest: Path) -> Path:
    """A good model file at ``dest`` without copying 100 MB (a symlink where allowed)."""
    try:
        dest.symlink_to(good)
    except OSError:
        dest.write_bytes(good.read_bytes())
    return dest


def _crafted(good: Path, dest: Path, key: str, vtype: int, value: object) -> Path:
    """The starter model with one header value changed; its tensor data left sparse."""
    with good.open("rb") as src:
        head = src.read(4 << 20)
    header, data_start = read_header(head)
    header.set(key, vtype, value)
    blob = write_header(header)
    with dest.open("wb") as f:
        f.write(blob)
        f.truncate(len(blob) + good.stat().st_size - data_start)
    return dest


# --- truncated tensor data -------------------------------------------------------------------


def test_truncated_data_is_caught_from_sizes(smollm2_path: Path, tmp_path: Path) -> None:
    cut = _truncated_copy(smollm2_path, tmp_path / "cut.gguf")
    with pytest.raises(ModelLoadFailed) as info:
        read_gguf_metadata(cut)
    message = info.value.user_message
    assert "truncated" in message and "Download it again." in message
    good = read_gguf_metadata(smollm2_path)
    assert f"promises {good.data_size:,} bytes" in message
    assert f"the file has {good.data_size - (1 << 20):,}" in message
    # The ranged reader knows the total size too, and says the same.
    data = cut.read_bytes()
    with pytest.raises(ModelLoadFailed, match="truncated"):
        read_gguf_metadata_from_range(VirtualFile(data, len(data)), len(data))
    # A file that merely ends in padding after the last tensor is whole.
    assert good.header_size + good.data_size <= good.file_size


def test_truncated_model_is_listed_as_broken_and_never_loaded(
        smollm2_path: Path) -> None:
    cut = _truncated_copy(smollm2_path, _in_library("o/cut-GGUF/cut-Q4_1.gguf"))
    _linked_copy(smollm2_path, _in_library("o/good-GGUF/good-Q4_1.gguf"))
    by_id = {m.id: m for m in list_models()}
    broken, good = by_id["o/cut-GGUF:Q4_1"], by_id["o/good-GGUF:Q4_1"]
    assert not broken.usable and "truncated" in (broken.problem or "")
    assert good.usable and good.problem is None
    # Resolving still finds it (so it can be deleted), but nothing loads it.
    assert resolve_model("o/cut-GGUF:Q4_1").path == cut
    with pytest.raises(ModelLoadFailed, match=r"could not load cut-Q4_1\.gguf\. .*truncated"):
        check_gguf_file(cut)
    with pytest.raises(ModelLoadFailed, match="truncated"):
        next(planned_loads(broken, EngineSettings()))  # before the engine unloads anything
    check_gguf_file(good.path)


def test_import_refuses_a_truncated_file(smollm2_path: Path, tmp_path: Path) -> None:
    cut = _truncated_copy(smollm2_path, tmp_path / "Cut-Q4_1.gguf")
    service = LibraryService(Settings(), hardware=HARDWARE)
    with pytest.raises(InvalidRequest, match=r"'Cut-Q4_1\.gguf' can't be imported: .*truncat"):
        service.import_file(cut)


def test_split_model_with_a_part_missing_is_broken(smollm2_path: Path) -> None:
    for i in (1, 3):
        _linked_copy(smollm2_path, _in_library(f"o/Big-GGUF/Big-Q4_1-0000{i}-of-00003.gguf"))
    (model,) = [m for m in list_models() if m.repo == "o/Big-GGUF"]
    assert model.problem is not None and "Only 2 of the 3 files" in model.problem


def test_listing_reads_each_header_once(smollm2_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _truncated_copy(smollm2_path, _in_library("o/r-GGUF/r-Q4_1.gguf"))
    parses: list[int] = []
    real_parse = gguf_meta._parse
    monkeypatch.setattr(gguf_meta, "_parse", lambda *a: parses.append(1) or real_parse(*a))
    gguf_meta._headers.clear()
    first = {m.id: m.problem for m in list_models()}
    count = len(parses)
    assert count >= 1 and first["o/r-GGUF:Q4_1"]
    assert {m.id: m.problem for m in list_models()} == first
    gguf_meta._headers.clear()  # a new process: the verdicts saved on disk still hold
    assert {m.id: m.problem for m in list_models()} == first
    assert len(parses) == count
    with path.open("ab") as f:  # the download finished after all: checked again
        f.write(b"\0" * (1 << 20))
    after = {m.id: m.problem for m in list_models()}
    assert len(parses) == count + 1 and after["o/r-GGUF:Q4_1"] is None


# --- headers that would take the whole process down inside llama.cpp -----------------------


@pytest.mark.parametrize(("key", "vtype", "value", "says"), [
    ("llama.block_count", UINT32, 0, "no model layers"),
    ("llama.block_count", UINT32, 600, "600 layers"),
    ("llama.expert_used_count", UINT32, 2, "expert counts"),
    ("llama.rope.scaling.type", STRING, b"bogus", "RoPE scaling"),
], ids=["no-layers", "too-many-layers", "experts", "rope-scaling"])
def test_headers_llama_cpp_would_abort_on_are_refused_first(
        smollm2_path: Path, tmp_path: Path, key: str, vtype: int, value: object,
        says: str) -> None:
    # Each of these hits a GGML_ASSERT in llama.cpp, which aborts the process (checked by
    # hand: exit status 134) instead of failing the load.
    path = _crafted(smollm2_path, tmp_path / "crafted.gguf", key, vtype, value)
    assert says in (read_gguf_metadata(path).problem or "")
    with pytest.raises(ModelLoadFailed, match=says):
        check_gguf_file(path)
    with pytest.raises(InvalidRequest, match=f"{says}|holds no language model"):
        LibraryService(Settings(), hardware=HARDWARE).import_file(path)


@pytest.mark.parametrize(("key", "vtype", "value"), [
    ("general.alignment", UINT32, 0),
    ("llama.block_count", STRING, b"abc"),
    ("llama.context_length", 6, float("nan")),
    ("llama.block_count", 10, 2**40),
], ids=["alignment-0", "block-count-text", "nan-context", "block-count-2^40"])
def test_cli_show_answers_a_damaged_header_with_a_sentence(
        smollm2_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
        vtype: int, value: object) -> None:
    path = _crafted(smollm2_path, tmp_path / "damaged.gguf", key, vtype, value)
    assert hearth(["show", str(path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "damaged" in err and "Traceback" not in err


def test_engine_checks_every_part_of_a_split_model(smollm2_path: Path, tmp_path: Path) -> None:
    first = _crafted(smollm2_path, tmp_path / "m-00001-of-00002.gguf", "split.count", 2, 2)
    second = tmp_path / "m-00002-of-00002.gguf"
    with pytest.raises(ModelLoadFailed, match=r"m-00002-of-00002\.gguf is missing"):
        check_gguf_file(first)
    second.write_bytes(b"GGUF" + b"\xff" * 60)  # llama.cpp would open this one itself
    with pytest.raises(ModelLoadFailed, match=r"\(its part m-00002-of-00002\.gguf\)"):
        check_gguf_file(first)
    second.unlink()
    _linked_copy(smollm2_path, second)
    check_gguf_file(first)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadFailed, match="not a regular file"):
        read_gguf_metadata(fifo)


# --- ids of files without a quant in their names ---------------------------------------------


def test_files_without_a_quant_each_get_their_own_id(smollm2_path: Path) -> None:
    files = {
        "o/r-GGUF/alpha.gguf": "o/r-GGUF:alpha",
        "o/r-GGUF/beta.gguf": "o/r-GGUF:beta",
        "o/r-GGUF/one/model.gguf": "o/r-GGUF:model",
        "o/r-GGUF/two/model.gguf": "o/r-GGUF:two-model",
        "o/r-GGUF/m-Q4_K_M.gguf": "o/r-GGUF:Q4_K_M",
        "o/r-GGUF/m-v2-Q4_K_M.gguf": "o/r-GGUF:m-v2-Q4_K_M",
        "o/r-GGUF/Q8_0/m-00001-of-00002.gguf": "o/r-GGUF:Q8_0",  # named by its folder
    }
    for rel in files:
        _linked_copy(smollm2_path, _in_library(rel))
    _linked_copy(smollm2_path, _in_library("o/r-GGUF/Q8_0/m-00002-of-00002.gguf"))
    models = [m for m in list_models() if m.repo == "o/r-GGUF"]
    assert sorted(m.id for m in models) == sorted(files.values())
    assert not any("None" in m.id for m in models)
    for rel, model_id in files.items():
        model = resolve_model(model_id)
        assert model.path == hearth_paths().models_dir / rel and model.usable
    assert resolve_model("o/r-GGUF:q8_0").parts[1].name == "m-00002-of-00002.gguf"


def test_hf_cache_files_without_a_quant_get_their_own_id(
        smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--o--plain" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for name in ("first.gguf", "second.gguf"):
        _linked_copy(smollm2_path, snap / name)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ids = sorted(m.id for m in list_models() if m.repo == "o/plain")
    assert ids == ["o/plain:first", "o/plain:second"]


def test_a_repo_name_prefers_a_usable_file(smollm2_path: Path) -> None:
    _truncated_copy(smollm2_path, _in_library("o/r-GGUF/a-Q8_0.gguf"))
    _linked_copy(smollm2_path, _in_library("o/r-GGUF/b-Q6_K.gguf"))
    assert resolve_model("o/r-GGUF").quant == "Q6_K"


# --- FROM in a Modelfile ----------------------------------------------------------------------


def _from(target: str | Path) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        build_preset("mine", parse_modelfile(f"FROM {target}\n"), allow_paths=True)
    assert info.value.user_message.endswith(".")
    return info.value


def test_from_must_be_a_gguf_model_file(smollm2_path: Path, tmp_path: Path) -> None:
    assert "not a .gguf file" in _from("/etc/passwd").user_message
    notes = tmp_path / "notes.gguf"
    notes.write_text("shopping list\n")
    assert "not a GGUF model file" in _from(notes).user_message
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    assert "no model file there" in _from(folder).user_message
    assert "no model file there" in _from(tmp_path / "absent.gguf").user_message
    cut = _truncated_copy(smollm2_path, tmp_path / "cut.gguf")
    assert "truncated" in _from(cut).user_message
    crafted = _crafted(smollm2_path, tmp_path / "x.gguf", "llama.block_count", UINT32, 0)
    assert "no model layers" in _from(crafted).user_message
    preset, _ = build_preset("mine", parse_modelfile(f"FROM {smollm2_path}\n"),
                             allow_paths=True)
    assert preset.base == str(smollm2_path.resolve())


def test_hearth_create_refuses_from_etc_passwd(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM /etc/passwd\nSYSTEM hi\n")
    assert hearth(["create", "mine", "-f", str(modelfile)]) != 0
    assert "FROM /etc/passwd is not a .gguf file" in capsys.readouterr().err


# --- the planner with absurd but well-formed shapes --------------------------------------------


@pytest.mark.parametrize("changes", [
    {"n_layer": 0, "n_head": (), "n_head_kv": (), "swa_layers": (), "layer_bytes": ()},
    {"n_head": (0,) * 30, "n_head_kv": (0,) * 30},
    {"n_embd": 0, "head_dim_k": 0, "head_dim_v": 0},
    {"n_ctx_train": 2**60},
    {"n_ctx_train": 0, "n_vocab": 0},
    {"sliding_window": 2**32 - 1, "swa_layers": (True,) * 30},
    {"layer_bytes": (2**50,) * 30},
    {"n_head_kv": (2**31,) * 30, "head_dim_k": 2**31, "head_dim_v": 2**31},
], ids=["no-layers", "no-heads", "no-embedding", "ctx-2^60", "no-vocab", "huge-window",
        "huge-layers", "huge-kv"])
def test_planner_gives_a_sane_plan_for_absurd_shapes(smollm2_path: Path,
                                                     changes: dict[str, object]) -> None:
    meta = dataclasses.replace(read_gguf_metadata(smollm2_path), **changes)
    for request in (PlanRequest(), PlanRequest(n_ctx=4096, n_parallel=4),
                    PlanRequest(n_gpu_layers=5)):
        plan = plan_offload(meta, HARDWARE, request)
        assert plan.reason.endswith(".") and 0 <= plan.n_gpu_layers <= meta.n_layer + 1
        assert plan.n_ctx <= max(request.n_ctx or request.default_ctx, 1)
        steps = 0
        while plan is not None and steps < 100:  # retries shrink and stop
            plan, steps = next_smaller_plan(plan), steps + 1
        assert steps < 100


@pytest.mark.parametrize("changes", [
    {"n_layer": -1},
    {"n_embd": -576},
    {"n_ctx_train": 2**70},
    {"n_layer": 31},  # per-layer tuples of 30 entries
    {"layer_bytes": (-1,) * 30},
], ids=["negative-layers", "negative-embedding", "ctx-2^70", "mismatched", "negative-bytes"])
def test_planner_refuses_impossible_shapes_with_a_sentence(
        smollm2_path: Path, changes: dict[str, object]) -> None:
    meta = dataclasses.replace(read_gguf_metadata(smollm2_path), **changes)
    with pytest.raises(BackendError, match="impossible shape"):
        plan_offload(meta, HARDWARE)
