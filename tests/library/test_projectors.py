"""Vision projectors in the library: the header check, pairing in listings, import, delete,
choosing which projector a repo's download takes, and the planner counting one."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from backend.application.capabilities import capabilities
from backend.errors import InvalidRequest, ModelLoadFailed
from backend.hardware.memory_model import PlanRequest
from backend.hardware.planner import plan_offload
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.local import delete_model, list_models, models_dir, resolve_model
from backend.library.projector import check_pair, mismatch, read_projector
from backend.library.quants import (
    RemoteFile,
    choose_projector,
    group_quants,
    is_model_gguf,
    with_projector,
)
from backend.library.service import LibraryService
from backend.settings_store import SettingsStore
from tests.library.projectors import projector_bytes, write_projector

SMOL_N_EMBD = 576  # SmolLM2-135M's width: what its projector must produce


def _downloaded(smollm2_path: Path, repo: str = "o/Smol-GGUF") -> Path:
    folder = models_dir() / repo
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(smollm2_path, folder / "Smol-Q4_1.gguf"))


# --- the header check --------------------------------------------------------------------------

def test_a_projector_header_is_read(tmp_path: Path) -> None:
    info = read_projector(write_projector(tmp_path / "mmproj-F16.gguf", 576))
    assert (info.projection_dim, info.projector_type, info.quant_name) == (576, "mlp", "F16")
    assert info.weights_bytes > 0 and info.compute_bytes > info.weights_bytes
    assert info.memory_bytes == info.weights_bytes + info.compute_bytes
    # No projection_dim key (older conversions): the last projection tensor says.
    old = read_projector(write_projector(tmp_path / "old.gguf", 320, declare_dim=False))
    assert old.projection_dim == 320


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"arch": b"llama"}, "not 'clip'"),
    ({"vision": False}, "no image encoder"),
])
def test_what_is_not_a_vision_projector_is_refused(tmp_path: Path, kwargs: dict[str, object],
                                                   words: str) -> None:
    with pytest.raises(ModelLoadFailed, match=words):
        read_projector(write_projector(tmp_path / "x.gguf", 576, **kwargs))


def test_a_language_model_or_a_damaged_file_is_no_projector(tmp_path: Path,
                                                            smollm2_path: Path) -> None:
    with pytest.raises(ModelLoadFailed, match="not 'clip'"):
        read_projector(smollm2_path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(projector_bytes(576)[:300])
    with pytest.raises(ModelLoadFailed, match=r"truncated|ends in the middle"):
        read_projector(cut)
    with pytest.raises(ModelLoadFailed):
        read_projector(tmp_path)  # a folder


def test_a_projector_for_another_model_is_refused(tmp_path: Path, smollm2_path: Path) -> None:
    wrong = write_projector(tmp_path / "mmproj-big.gguf", 4096)
    with pytest.raises(ModelLoadFailed) as caught:
        check_pair(wrong, smollm2_path, "'SmolLM2'")
    message = caught.value.user_message
    assert "4,096-wide" in message and "576-wide" in message and "SmolLM2" in message
    assert mismatch(read_projector(wrong), 4096) is None
    right = write_projector(tmp_path / "mmproj-ok.gguf", SMOL_N_EMBD)
    assert check_pair(right, smollm2_path).projection_dim == SMOL_N_EMBD


# --- pairing in listings ---------------------------------------------------------------------

def test_a_downloaded_model_is_paired_with_the_projector_beside_it(smollm2_path: Path) -> None:
    model_file = _downloaded(smollm2_path)
    folder = model_file.parent
    write_projector(folder / "mmproj-Smol-Q8_0.gguf", SMOL_N_EMBD)
    write_projector(folder / "mmproj-Smol-F16.gguf", SMOL_N_EMBD)
    write_projector(folder / "mmproj-other-F16.gguf", 4096)  # another model's: never used
    models = {m.id: m for m in list_models()}
    assert not any("mmproj" in name for name in models)  # projectors are not models
    smol = models["o/Smol-GGUF:Q4_1"]
    assert smol.mmproj == folder / "mmproj-Smol-F16.gguf"  # f16 preferred
    assert models["smollm2:135m"].mmproj is None  # the built-in is text-only
    (folder / "mmproj-Smol-F16.gguf").unlink()
    assert {m.id: m for m in list_models()}["o/Smol-GGUF:Q4_1"].mmproj == \
        folder / "mmproj-Smol-Q8_0.gguf"


def test_a_model_named_by_its_path_pairs_with_the_projector_beside_it(
        tmp_path: Path, smollm2_path: Path) -> None:
    """`hearth run ~/models/x.gguf` (or serve --model PATH) sees what a listing would."""
    model = Path(shutil.copy(smollm2_path, tmp_path / "Smol-Q4_1.gguf"))
    assert resolve_model(str(model), allow_paths=True).mmproj is None
    projector = write_projector(tmp_path / "mmproj-Smol-F16.gguf", SMOL_N_EMBD)
    assert resolve_model(str(model), allow_paths=True).mmproj == projector


def test_only_a_matching_projector_pairs(smollm2_path: Path) -> None:
    model_file = _downloaded(smollm2_path)
    write_projector(model_file.parent / "mmproj-F16.gguf", 4096)
    (model_file.parent / "mmproj-junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    smol = next(m for m in list_models() if m.id == "o/Smol-GGUF:Q4_1")
    assert smol.mmproj is None and smol.usable  # still a fine text model


def test_deleting_the_last_model_takes_its_projector(smollm2_path: Path) -> None:
    model_file = _downloaded(smollm2_path)
    shutil.copy(model_file, model_file.parent / "Smol-Q8_0.gguf")
    projector = write_projector(model_file.parent / "mmproj-F16.gguf", SMOL_N_EMBD)
    delete_model("o/Smol-GGUF:Q4_1")
    assert projector.exists()  # the Q8_0 still uses it
    delete_model("o/Smol-GGUF:Q8_0")
    assert not projector.exists() and not model_file.parent.exists()


# --- import ----------------------------------------------------------------------------------

def test_import_pairs_a_model_with_its_projector(tmp_path: Path, smollm2_path: Path) -> None:
    store = SettingsStore.open()
    library = LibraryService(store)
    model = Path(shutil.copy(smollm2_path, tmp_path / "mine.gguf"))
    elsewhere = write_projector(tmp_path / "vision" / "proj.gguf", SMOL_N_EMBD)
    found = library.import_file(model, elsewhere)
    assert found.mmproj == elsewhere.resolve() and found.source == "file"
    assert store.snapshot().library.projectors == ((str(model.resolve()),
                                                    str(elsewhere.resolve())),)
    assert "vision" in capabilities(None, None, vision=found.mmproj is not None)
    # Taken off the list: the pair is forgotten with it, the files stay.
    library.delete(found.id)
    assert store.snapshot().library.projectors == () and elsewhere.exists()


def test_import_refuses_a_projector_that_does_not_fit(tmp_path: Path,
                                                      smollm2_path: Path) -> None:
    library = LibraryService(SettingsStore.open())
    model = Path(shutil.copy(smollm2_path, tmp_path / "mine.gguf"))
    with pytest.raises(InvalidRequest, match="4,096-wide"):
        library.import_file(model, write_projector(tmp_path / "p.gguf", 4096))
    with pytest.raises(InvalidRequest, match="not 'clip'"):
        library.import_file(model, smollm2_path)  # a model given as its own projector
    with pytest.raises(InvalidRequest, match=r"no \.gguf projector"):
        library.import_file(model, tmp_path / "missing.gguf")
    with pytest.raises(InvalidRequest, match=r"no language model|vision projector"):
        library.import_file(write_projector(tmp_path / "mmproj.gguf", 576))
    assert library.local_models()[-1].model.id != "mine"  # nothing was listed


# --- which projector a download takes --------------------------------------------------------

def test_a_repos_projector_comes_with_every_quant() -> None:
    files = [RemoteFile("M-Q4_K_M.gguf", 1000, "A"), RemoteFile("M-Q8_0.gguf", 2000, "B"),
             RemoteFile("mmproj-M-F32.gguf", 400, "C"), RemoteFile("mmproj-M-F16.gguf", 200),
             RemoteFile("mmproj-M-Q8_0.gguf", 110), RemoteFile("README.md", 5)]
    options = group_quants(files)
    assert [(o.quant, o.mmproj) for o in options] == [("Q4_K_M", "mmproj-M-F16.gguf"),
                                                      ("Q8_0", "mmproj-M-F16.gguf")]
    q4 = options[0]
    assert q4.files == ("M-Q4_K_M.gguf", "mmproj-M-F16.gguf") and q4.total_size == 1200
    assert (q4.model_files, q4.model_size, q4.is_split) == (("M-Q4_K_M.gguf",), 1000, False)
    assert q4.sha256s == ("a", None)
    text_only = with_projector(q4, None)
    assert (text_only.files, text_only.total_size, text_only.mmproj) == \
        (("M-Q4_K_M.gguf",), 1000, None)
    assert not is_model_gguf("gemma-3-4b-it-mmproj-f16.gguf")


def test_a_smaller_projector_when_the_planner_says_f16_does_not_fit() -> None:
    files = [RemoteFile("mmproj-F16.gguf", 200), RemoteFile("mmproj-Q8_0.gguf", 110),
             RemoteFile("mmproj-Q4_K_M.gguf", 60), RemoteFile("mmproj-F32.gguf", 400)]

    def pick(limit: int) -> str | None:
        chosen = choose_projector(files, lambda f: f.size <= limit)
        return chosen.name if chosen else None

    assert pick(10_000) == "mmproj-F16.gguf"  # f16 by default, never the f32
    assert pick(150) == "mmproj-Q8_0.gguf"
    assert pick(70) == "mmproj-Q4_K_M.gguf"
    assert pick(1) == "mmproj-Q4_K_M.gguf"  # nothing fits: the smallest
    assert choose_projector([RemoteFile("M-Q4_K_M.gguf", 9)]) is None


# --- the planner ------------------------------------------------------------------------------

def _hardware(vram_gib: float, ram_gib: float = 64) -> Hardware:
    gpus = (GpuInfo(0, "Test GPU", int(vram_gib * GiB), int(vram_gib * GiB), "cuda"),) \
        if vram_gib else ()
    return Hardware(cpu_name="test", physical_cores=8, ram_total_bytes=int(ram_gib * GiB),
                    ram_available_bytes=int(ram_gib * GiB), gpus=gpus,
                    gpu_offload_supported=True)


def test_the_planner_counts_the_projector_where_it_runs(tmp_path: Path,
                                                        smollm2_path: Path) -> None:
    meta = read_gguf_metadata(smollm2_path)
    small = read_projector(write_projector(tmp_path / "p.gguf", SMOL_N_EMBD))
    # A SigLIP-sized one: 400M parameters of f16, 729 patches, 16 heads.
    big = replace(small, weights_bytes=800_000_000, image_size=384, patch_size=14,
                  n_embd=1152, n_ff=4304, n_head=16)
    assert big.compute_bytes > 20 * 2**20  # 730 patches through a 4304-wide MLP
    request = PlanRequest(n_ctx=2048)
    for hardware, side in ((_hardware(8), "gpu"), (_hardware(0), "cpu")):
        without = plan_offload(meta, hardware, request)
        with_it = plan_offload(meta, hardware, replace(request, projector=big))
        grew = getattr(with_it, side).total - getattr(without, side).total
        assert grew == big.memory_bytes, side
    # A GPU that holds the model alone but not with the projector: the planner says so.
    alone = plan_offload(meta, _hardware(0), request).cpu.total
    budget_gib = (alone + big.memory_bytes // 2 + 2**30) / GiB  # margin 1 GiB
    tight = _hardware(0, ram_gib=budget_gib)
    assert plan_offload(meta, tight, request).verdict != "too_large"
    assert plan_offload(meta, tight, replace(request, projector=big)).verdict == "too_large"


def test_files_picked_together_pair_each_model_with_the_projector_that_fits(
        tmp_path: Path, smollm2_path: Path) -> None:
    library = LibraryService(SettingsStore.open())
    model = Path(shutil.copy(smollm2_path, tmp_path / "picked.gguf"))
    wide = write_projector(tmp_path / "a" / "wide-mmproj.gguf", 4096)
    fits = write_projector(tmp_path / "b" / "fits-mmproj.gguf", SMOL_N_EMBD)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    outcome = library.import_files([wide, model, notes, fits])
    (found,) = outcome.imported
    assert found.id == "picked" and found.mmproj == fits.resolve()
    assert len(outcome.problems) == 2, outcome.problems
    assert any("notes.txt" in p for p in outcome.problems)
    assert any("wide-mmproj.gguf' is a vision projector" in p and "4,096 wide" in p
               for p in outcome.problems)
    assert [m.model.id for m in library.local_models()].count("wide-mmproj") == 0
