"""The catalog file and what is derived from it offline: card fields and fit estimates."""

from __future__ import annotations

import re

import pytest

from backend.hardware.memory_model import PlanRequest
from backend.hardware.planner import Verdict, plan_offload
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.catalog import CatalogEntry, CatalogShape, find_entry, load_catalog
from backend.library.catalog_fit import estimate_fit, estimated_metadata, typical_shape
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata
from backend.library.quants import parse_quant


def test_catalog_has_about_twenty_well_known_models() -> None:
    entries = [e for e in load_catalog() if e.kind == "chat"]
    assert 18 <= len(entries) <= 30
    families = {e.alias.split(":")[0].rstrip("0123456789.") for e in entries}
    for family in ("llama", "qwen", "gemma", "phi", "mistral", "deepseek-r", "smollm"):
        assert any(f.startswith(family) for f in families), family


def test_every_entry_is_complete_and_consistent() -> None:
    aliases = set()
    for e in load_catalog():
        assert re.fullmatch(r"[a-z0-9.\-]+(:[a-z0-9.\-]+)?", e.alias), e.alias
        assert e.alias not in aliases
        aliases.add(e.alias)
        assert re.fullmatch(r"[\w.\-]+/[\w.\-]+", e.repo) and "gguf" in e.repo.lower()
        assert e.license and e.description.endswith(".")
        assert e.default_quant in e.quants
        smallest = 10_000_000 if e.kind == "embedding" else 100_000_000
        for quant, size in e.quants.items():
            assert parse_quant(f"model-{quant}.gguf") == quant
            assert smallest < size < 100_000_000_000


def test_lookup_by_alias_or_repo() -> None:
    entry = find_entry("llama3.2:3b")
    assert entry is not None and entry.repo.endswith("Llama-3.2-3B-Instruct-GGUF")
    assert find_entry(entry.repo.upper()) == entry
    assert find_entry("no-such-model") is None


def test_every_entry_has_what_its_card_shows() -> None:
    for e in load_catalog():
        if e.kind == "embedding":  # test_embedding_entries: other shapes and precisions
            continue
        assert e.parameters > 0 and e.parameters_label.endswith(("parameters", "active)")), e
        low, high = e.size_range
        assert 0 < low <= high and low == min(e.quants.values())
        assert e.licence_label and "\n" not in e.description and len(e.description) <= 90
        # Sizes and parameter counts agree: a typo in either shows as absurd bits per weight
        # (small models with big vocabularies kept at high precision push a Q8_0 past 11).
        for quant, size in e.quants.items():
            bits = size * 8 / (e.parameters * 1e9)
            assert 3.5 < bits < 12, (e.alias, quant, round(bits, 2))
        shape = e.shape
        assert shape is not None, e.alias
        assert shape.n_layer > 0 and shape.n_head % shape.n_head_kv == 0
        assert shape.head_dim in (64, 128, 256) and shape.n_ctx_train >= 8192
        assert 30_000 < shape.n_vocab < 300_000
        # Embeddings can't hold more parameters than the whole model.
        embeddings = shape.n_vocab * shape.n_embd * (1 if shape.tied_embeddings else 2)
        assert embeddings < e.parameters * 1e9, e.alias


def test_the_file_stays_readable_by_older_readers() -> None:
    """Readers written before the card fields read the same keys with the same meaning."""
    import json

    from backend.library.catalog import CATALOG_PATH

    data = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    assert data["version"] == 1
    for m in data["models"]:
        assert {"alias", "repo", "license", "description", "default_quant", "quants"} <= set(m)
        assert all(isinstance(v, int) for v in m["quants"].values())


@pytest.mark.parametrize(("billions", "active", "label"), [
    (0.36, 0.0, "360M parameters"), (1.24, 0.0, "1.2B parameters"), (8.03, 0.0, "8B parameters"),
    (30.5, 3.3, "30.5B parameters (3.3B active)"), (0.0, 0.0, ""),
])
def test_parameter_labels(billions: float, active: float, label: str) -> None:
    entry = CatalogEntry("m", "o/m-GGUF", "mit", "M.", "Q4_K_M", {"Q4_K_M": 1},
                         parameters=billions, active_parameters=active)
    assert entry.parameters_label == label
    assert entry.licence_label == "MIT"


# --- fits estimated offline, from the catalog's shape and sizes -----------------------------

def _shape_of(meta: GgufMetadata) -> CatalogShape:
    """What the catalog would say about a model whose real header we have."""
    n_pattern = 6 if meta.architecture == "gemma3" else 0
    return CatalogShape(meta.architecture, meta.n_layer, meta.n_embd, meta.n_head[0],
                        meta.n_head_kv[0], meta.head_dim_k, meta.n_ctx_train, meta.n_vocab,
                        tied_embeddings=meta.output_bytes == 0,
                        sliding_window=meta.sliding_window, swa_pattern=n_pattern)


def _gpu(free: int) -> Hardware:
    return Hardware("CPU", 8, 32 * GiB, 16 * GiB, (GpuInfo(0, "GPU", 8 * GiB, free, "cuda"),),
                    gpu_offload_supported=True)


def _partial_gpu(meta: GgufMetadata) -> Hardware | None:
    """A GPU on which the real model splits about half and half between GPU and CPU."""
    for mib in range(1024, 4096, 4):
        plan = plan_offload(meta, _gpu(mib << 20), PlanRequest(n_ctx=2048))
        if plan.verdict is Verdict.PARTIAL and plan.n_gpu_layers >= meta.n_layer // 2:
            return plan.inputs.hardware
    return None


def _machines(meta: GgufMetadata) -> list[Hardware]:
    machines = [
        Hardware("CPU", 8, 32 * GiB, 16 * GiB, (), gpu_offload_supported=False),
        Hardware("CPU", 8, 2 * GiB, GiB + meta.file_size // 2, (),  # too large
                 gpu_offload_supported=False),
        _gpu(8 * GiB),
    ]
    partial = _partial_gpu(meta)
    return machines if partial is None else [*machines, partial]


@pytest.mark.parametrize("model", ["smollm2_path", "gemma_path"])
def test_an_estimate_from_shape_and_size_matches_the_real_header(
        request: pytest.FixtureRequest, model: str) -> None:
    """The accuracy claim in catalog_fit's docstring: same verdicts, totals within 3%, a
    partial offload within two layers of the real header's plan (SmolLM2's embeddings are a
    fifth of its bytes, the worst case for splitting bytes by parameter counts)."""
    real = read_gguf_metadata(request.getfixturevalue(model))
    entry = CatalogEntry("test:model", "test/Model-GGUF", "mit", "Test.", real.quant_name,
                         {real.quant_name: real.file_size},
                         parameters=real.parameter_count / 1e9, shape=_shape_of(real))
    estimate = estimated_metadata(entry, real.quant_name)
    assert estimate is not None and estimate.swa_layers == real.swa_layers
    machines = _machines(real)
    assert model != "smollm2_path" or len(machines) == 4  # a partial offload is checked too
    for hardware in machines:
        for request_ in (PlanRequest(n_ctx=2048), PlanRequest(n_ctx=2048, n_parallel=4),
                         PlanRequest()):
            exact = plan_offload(real, hardware, request_)
            guess = plan_offload(estimate, hardware, request_)
            assert guess.verdict == exact.verdict, (hardware, exact.reason, guess.reason)
            assert guess.n_ctx == exact.n_ctx
            assert abs(guess.total_bytes - exact.total_bytes) <= 0.03 * exact.total_bytes
            assert abs(guess.n_gpu_layers - exact.n_gpu_layers) <= 2


def test_an_entry_without_a_shape_borrows_a_typical_one() -> None:
    bare = CatalogEntry("bare:1b", "test/Bare-GGUF", "mit", "Bare.", "Q4_K_M",
                        {"Q4_K_M": 800_000_000})
    meta = estimated_metadata(bare, "Q4_K_M")
    assert meta is not None and meta.weights_bytes <= 800_000_000
    assert 0.9 < meta.parameter_count / 1.3e9 < 1.1  # 800 MB at ~4.9 bits per weight
    nearest = typical_shape(1.3)
    assert nearest is not None and meta.n_layer == nearest.n_layer
    assert estimated_metadata(CatalogEntry("x", "t/x", "mit", "X.", "Q4_K_M", {}), "Q4_K_M") \
        is None


GPU8 = Hardware("CPU", 8, 32 * GiB, 16 * GiB, (GpuInfo(0, "GPU", 8 * GiB, 8 * GiB, "cuda"),),
                gpu_offload_supported=True)
NO_GPU = Hardware("CPU", 8, 32 * GiB, 16 * GiB, (), gpu_offload_supported=False)
SMALL = Hardware("CPU", 4, 8 * GiB, 4 * GiB, (), gpu_offload_supported=False)


@pytest.mark.parametrize(("alias", "quant", "hardware", "verdict"), [
    ("qwen2.5:0.5b", "Q8_0", GPU8, Verdict.FULL_GPU),
    ("llama3.2:3b", "Q4_K_M", GPU8, Verdict.FULL_GPU),
    ("gemma3:27b", "Q4_K_M", GPU8, Verdict.PARTIAL),
    ("qwen3:30b-a3b", "Q4_K_M", GPU8, Verdict.PARTIAL),
    ("qwen3:30b-a3b", "Q8_0", GPU8, Verdict.TOO_LARGE),
    ("llama3.1:8b", "Q4_K_M", NO_GPU, Verdict.CPU),
    ("llama3.1:8b", "Q8_0", SMALL, Verdict.TOO_LARGE),
    ("smollm2:360m", "Q8_0", SMALL, Verdict.CPU),
])
def test_catalog_verdicts_offline(alias: str, quant: str, hardware: Hardware,
                                  verdict: Verdict) -> None:
    entry = find_entry(alias)
    assert entry is not None
    plan = estimate_fit(entry, quant, hardware)
    assert plan is not None and plan.verdict == verdict, plan and plan.reason


def test_embedding_entries() -> None:
    """Two to three embedding models, each with its pooling and dimensions; nomic-embed-text
    v1.5 keeps its Matryoshka sizes; none is ever the welcome's pick; the planner gives an
    encoder no KV cache and a fixed, small context whatever the chat settings ask."""
    from backend.library.catalog import embedding_entries
    from backend.library.picks import pick_best

    entries = embedding_entries()
    assert 2 <= len(entries) <= 4
    assert all(e.kind == "embedding" and e.embedding is not None for e in entries)
    assert {e.embedding.pooling for e in entries if e.embedding} <= {"mean", "cls", "last"}
    nomic = find_entry("nomic-embed-text:v1.5")
    assert nomic is not None and nomic.matryoshka_dimensions[0] == 768
    assert nomic.embedding is not None and nomic.embedding.query_prefix == "search_query: "
    assert all(e.kind == "chat" for e in load_catalog() if e.embedding is None)
    hardware = NO_GPU
    for e in entries:
        assert e.shape is not None and not e.shape.causal
        meta = estimated_metadata(e, e.default_quant)
        assert meta is not None and meta.embedding_only
        plan = plan_offload(meta, hardware, PlanRequest(n_ctx=32768, n_parallel=8))
        assert plan.verdict is Verdict.CPU and plan.cpu.kv_cache == 0
        assert plan.n_ctx <= 2048 and plan.cpu.total < 2 * GiB, e.alias
    pick = pick_best(load_catalog(), hardware)
    assert pick is not None and pick.entry.kind == "chat"
