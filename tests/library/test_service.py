"""LibraryService without a GUI: the best pick, importing, fit badges from the loopback Hub."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import HubUnavailable, InvalidRequest
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.catalog import CatalogEntry, load_catalog
from backend.library.local import STARTER_ID, list_models
from backend.library.picks import FitBadge, QuantChoice, best_quant
from backend.library.quants import QuantOption
from backend.library.service import LibraryService, pick_best
from backend.settings import load_settings
from backend.settings_store import SettingsStore
from tests.library.hub_server import MULTI_REPO, SMOLLM2_REPO, HubServer

pytest_plugins = ["tests.library.hub_server"]


def entry(alias: str, size: int) -> CatalogEntry:
    return CatalogEntry(alias, f"test/{alias}", "mit", alias, "Q4_K_M", {"Q4_K_M": size})


CATALOG = [entry("tiny", 400_000_000), entry("small", 1_100_000_000),
           entry("medium", 2_500_000_000), entry("large", 4_900_000_000),
           entry("huge", 18_000_000_000)]


def machine(ram_free_gib: float, gpu_free_gib: float | None = None, *,
            offload: bool = True, unified: bool = False, cores: int = 8) -> Hardware:
    gpus = () if gpu_free_gib is None else (GpuInfo(
        0, "Test GPU", int(gpu_free_gib * GiB), int(gpu_free_gib * GiB),
        "metal" if unified else "cuda", unified_memory=unified),)
    return Hardware("Test CPU", cores, int(ram_free_gib * 2 * GiB), int(ram_free_gib * GiB), gpus,
                    gpu_offload_supported=offload)


@pytest.mark.parametrize(("hardware", "alias", "kind"), [
    (machine(16), "medium", "cpu"),  # no GPU: quick on a CPU, not the largest that fits in RAM
    (machine(64), "medium", "cpu"),  # lots of RAM doesn't make a CPU faster
    (machine(2), "tiny", "cpu"),  # leaves half the free RAM to everything else
    (machine(16, cores=2), "small", "cpu"),  # two cores: ~1.2 GB keeps replies readable
    (machine(16, cores=1), "tiny", "cpu"),
    (machine(0.8), None, None),  # nothing fits: only the starter is offered
    (machine(16, 8), "large", "full_gpu"),  # 8 GiB card: the 5 GB model fits with room
    (machine(16, 5), "medium", "full_gpu"),  # 5 GiB card: the 5 GB model does not
    (machine(64, 24), "huge", "full_gpu"),
    (machine(16, 1), "medium", "cpu"),  # a card too small for any: fall back to the CPU pick
    (machine(16, 8, offload=False), "medium", "cpu"),  # this build can't use the GPU
    (machine(16, 21, unified=True), "large", "full_gpu"),  # Apple: capped by free RAM (16)
])
def test_best_pick(hardware: Hardware, alias: str | None, kind: str | None) -> None:
    pick = pick_best(CATALOG, hardware)
    if alias is None:
        assert pick is None
        return
    assert pick is not None and (pick.entry.alias, pick.fit.kind) == (alias, kind)
    assert pick.quant == "Q4_K_M" and pick.size_bytes == pick.entry.approx_size()
    assert pick.fit.reason.endswith(".")


def test_best_pick_from_the_real_catalog() -> None:
    service = LibraryService(SettingsStore.in_memory(), hardware=machine(16, 8))
    pick = service.best_pick()
    assert pick is not None and pick.entry in load_catalog() and pick.fit.label == "Full GPU"


@pytest.fixture
def service() -> Iterator[LibraryService]:
    made = LibraryService(SettingsStore.open(), hardware=machine(12, 8))
    yield made
    made.close()


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_import_registers_a_gguf_in_place_and_delete_only_unlists_it(
        service: LibraryService, smollm2_path: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine" / "My-Model-Q4_1.gguf"
    mine.parent.mkdir()
    shutil.copyfile(smollm2_path, mine)
    model = service.import_file(mine)
    assert (model.id, model.source, model.path) == ("My-Model-Q4_1", "file", mine.resolve())
    assert load_settings().library.extra_files == (str(mine.resolve()),)  # saved
    assert service.import_file(mine) == model  # again: the same entry, listed once
    listed = {m.id: m for m in service.local_models()}
    assert listed["My-Model-Q4_1"].size_bytes == mine.stat().st_size
    assert STARTER_ID in listed

    service.delete(model.id)
    assert mine.exists()  # the user's file is never deleted
    assert load_settings().library.extra_files == ()
    assert "My-Model-Q4_1" not in {m.id for m in list_models()}


@pytest.mark.parametrize(("name", "content", "says"), [
    ("notes.gguf", b"just some text, not a model\n" * 10, "not a GGUF model file"),
    ("cut.gguf", b"GGUF\x03\x00", "truncated"),
    ("notes.txt", b"hello", "not a .gguf file"),
])
def test_import_refuses_what_is_not_a_gguf_model(service: LibraryService, tmp_path: Path,
                                                 name: str, content: bytes, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidRequest) as err:
        service.import_file(path)
    assert says in err.value.user_message and name in err.value.user_message
    assert load_settings().library.extra_files == ()


def test_import_of_a_missing_file(service: LibraryService, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no file"):
        service.import_file(tmp_path / "gone.gguf")


def test_builtin_model_is_not_deleted(service: LibraryService) -> None:
    with pytest.raises(InvalidRequest, match="won't delete"):
        service.delete(STARTER_ID)


def test_quants_carry_fit_badges(hub_server: HubServer, service: LibraryService) -> None:
    (choice,) = service.quants(SMOLLM2_REPO)
    assert (choice.fit.kind, choice.fit.label) == ("full_gpu", "Full GPU")
    assert "layers fit" in choice.fit.reason
    served = sum(hub_server.bytes_served.values())
    service.quants(SMOLLM2_REPO)  # the header is cached: only the listing is asked again
    assert sum(hub_server.bytes_served.values()) == served
    cpu_only = LibraryService(SettingsStore.open(), hardware=machine(12))
    assert cpu_only.quants(SMOLLM2_REPO)[0].fit.label == "CPU"
    # Synthetic files with no real header: listed with an "Unknown" badge saying why.
    multi = service.quants(MULTI_REPO)
    assert len(multi) == 6 and {c.fit.label for c in multi} == {"Unknown"}
    assert "header" in multi[0].fit.reason


def test_search_offline_is_a_sentence(closed_port_endpoint: str,
                                      service: LibraryService) -> None:
    with pytest.raises(HubUnavailable) as err:
        service.search("llama")
    assert "can't be reached" in err.value.user_message


def test_download_manager_is_shared_and_survives_a_restart(
        hub_server: HubServer, service: LibraryService) -> None:
    assert service.downloads is service.downloads
    download_id = service.download_quant(SMOLLM2_REPO)
    done = service.downloads.wait(download_id, timeout=60)
    assert done.state == "completed", done.error
    assert any(m.model.path == done.path for m in service.local_models())


# --- catalog cards: fits for every catalog model, offline ---------------------------------

def test_catalog_cards_need_no_network(closed_port_endpoint: str) -> None:
    service = LibraryService(SettingsStore.in_memory(), hardware=machine(16, 8))
    cards = service.catalog_cards()
    assert [c.entry for c in cards] == list(load_catalog())
    for card in cards:
        assert [c.option.quant for c in card.quants] == list(card.entry.quants)
        assert all(c.estimated and c.file_name == "" for c in card.quants)
        assert card.best is not None and card.best.fit.kind != "unknown", card.entry.alias
        assert card.best.fit.reason.startswith("Estimated from the catalog")
    (recommended,) = [c for c in cards if c.recommended]
    pick = service.best_pick()
    assert pick is not None and recommended.entry == pick.entry
    by_alias = {c.entry.alias: c for c in cards}
    # An 8 GiB card: the best quality that fits wholly, not the default Q4_K_M.
    assert by_alias["llama3.2:3b"].best.option.quant == "Q8_0"  # type: ignore[union-attr]
    assert by_alias["gemma3:12b"].best.fit.kind == "partial"  # type: ignore[union-attr]
    assert by_alias["gemma3:27b"].best.fit.label == "Too large"  # type: ignore[union-attr]
    # The welcome's pick and its card agree: it runs wholly on the GPU at its default quant.
    (default,) = [c for c in recommended.quants if c.option.quant == pick.quant]
    assert default.fit.kind == "full_gpu" == pick.fit.kind


def test_a_header_read_from_the_hub_replaces_the_estimate(hub_server: HubServer) -> None:
    smollm2 = CatalogEntry("smollm2-test:135m", SMOLLM2_REPO, "apache-2.0", "Test.", "Q4_1",
                           {"Q4_1": 98_000_000})
    service = LibraryService(SettingsStore.in_memory(), hardware=machine(12, 8),
                             catalog=[smollm2])
    (before,) = service.catalog_cards()
    assert before.best is not None and before.best.fit.reason.startswith("Estimated")
    service.quants(SMOLLM2_REPO)  # opened on the Discover tab while online
    (after,) = service.catalog_cards()
    assert after.best is not None and after.best.fit.label == "Full GPU"
    assert not after.best.fit.reason.startswith("Estimated")  # the real header's plan


def _choice(quant: str, size: int, kind: str) -> QuantChoice:
    return QuantChoice("t/r", QuantOption(quant, (f"{quant}.gguf",), (size,), (None,), size),
                       FitBadge(kind, kind, "why."))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kinds", "default", "best"), [
    ({"Q4_K_M": "full_gpu", "Q6_K": "full_gpu", "Q8_0": "partial"}, "Q4_K_M", "Q6_K"),
    ({"Q4_K_M": "partial", "Q6_K": "partial", "Q2_K": "partial"}, "Q4_K_M", "Q4_K_M"),
    ({"Q4_K_M": "too_large", "Q6_K": "too_large", "Q2_K": "partial"}, "Q4_K_M", "Q2_K"),
    ({"Q4_K_M": "cpu", "Q8_0": "cpu", "Q2_K": "cpu"}, "Q4_K_M", "Q4_K_M"),
    ({"Q8_0": "cpu", "Q6_K": "cpu"}, None, "Q6_K"),  # no default: the smallest is quickest
    ({"Q4_K_M": "too_large", "Q8_0": "too_large"}, "Q4_K_M", "Q4_K_M"),
    ({"Q4_K_M": "unknown", "Q8_0": "unknown"}, "Q8_0", "Q8_0"),
])
def test_best_quant(kinds: dict[str, str], default: str | None, best: str) -> None:
    sizes = {"Q2_K": 1, "Q4_K_M": 2, "Q6_K": 3, "Q8_0": 4}
    choices = [_choice(q, sizes[q], k) for q, k in kinds.items()]
    picked = best_quant(choices, default)
    assert picked is not None and picked.option.quant == best
    assert best_quant([], default) is None
