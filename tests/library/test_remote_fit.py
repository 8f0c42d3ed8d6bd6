"""Fit verdicts computed from a remote header, before any download."""

from __future__ import annotations

from pathlib import Path

from backend.hardware.probe import GiB, probe_hardware
from backend.library import hub
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.remote_fit import remote_fit, remote_metadata
from tests.library.hub_server import GEMMA_REPO, SMOLLM2_REPO, HubServer

pytest_plugins = ["tests.library.hub_server"]


def test_remote_header_equals_the_local_one_and_reads_a_fraction(
        hub_server: HubServer, gemma_path: Path) -> None:
    option = hub.list_quants(GEMMA_REPO)[0]
    meta, fetched = remote_metadata(GEMMA_REPO, option)
    local = read_gguf_metadata(gemma_path)
    assert meta.n_layer == local.n_layer and meta.layer_bytes == local.layer_bytes
    assert meta.chat_template == local.chat_template
    assert fetched < option.total_size * 0.1


def test_fit_verdicts_from_the_remote_header(hub_server: HubServer) -> None:
    option = hub.list_quants(SMOLLM2_REPO)[0]
    cpu = probe_hardware()
    assert remote_fit(SMOLLM2_REPO, option, cpu.with_gpu_override(8 * GiB)).verdict == "full_gpu"
    tight = remote_fit(SMOLLM2_REPO, option, cpu.with_gpu_override(int(1.2 * GiB)))
    assert tight.verdict in ("partial", "cpu") and tight.reason.endswith(".")
