"""The hardware probe: runs anywhere, degrades to "no GPU" instead of crashing."""

from __future__ import annotations

import json
import sys
import types

import pytest

from backend.hardware import probe
from backend.hardware.probe import (
    CUDA_REBUILD_HINT,
    GiB,
    GpuInfo,
    default_metal_working_set,
    parse_size,
    probe_hardware,
)


def test_probe_returns_sane_values_here() -> None:
    hw = probe_hardware(gpu_offload_supported=False)
    assert hw.cpu_name and hw.physical_cores >= 1
    assert 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    for gpu in hw.gpus:  # none on the CI box; real ones wherever this runs with a GPU
        assert 0 <= gpu.free_bytes <= gpu.total_bytes and gpu.name
    assert hw.usable_gpus == ()  # the build cannot offload: no GPU is usable
    assert (hw.rebuild_hint is None) == (not hw.gpus)
    json.dumps(hw.to_json())


def test_offload_support_is_asked_of_the_engine_by_default() -> None:
    from backend.engine.capabilities import gpu_offload_supported

    assert probe_hardware().gpu_offload_supported is gpu_offload_supported()


def test_gpu_override_pretends_one_gpu() -> None:
    hw = probe_hardware(gpu_offload_supported=False).with_gpu_override(parse_size("8GiB"))
    assert len(hw.gpus) == 1 and hw.usable_gpus == hw.gpus
    gpu = hw.gpus[0]
    assert (gpu.total_bytes, gpu.free_bytes, gpu.backend) == (8 * GiB, 8 * GiB, "override")
    assert hw.rebuild_hint is None and hw.to_json()["gpus"][0]["free_bytes"] == 8 * GiB


@pytest.mark.parametrize(("text", "size"), [
    ("8GiB", 8 * GiB), ("8 GB", 8 * GiB), ("512MiB", 512 * 1024**2), ("1.5g", 3 * GiB // 2),
    ("1024", 1024),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_missing_nvml_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    assert probe._nvidia_gpus() == ()


def fake_nvml(init_error: bool) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if init_error:
            raise NVMLError("Driver Not Loaded")

    nvml.NVMLError = NVMLError  # type: ignore[attr-defined]
    nvml.nvmlInit = init  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA GeForce RTX 4090"  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        total=24 * GiB, free=22 * GiB, used=2 * GiB)
    return nvml


def test_nvml_without_driver_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(init_error=True))
    assert probe._nvidia_gpus() == ()


def test_nvidia_gpu_with_a_cpu_only_build_gets_the_rebuild_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(init_error=False))
    hw = probe_hardware(gpu_offload_supported=False)
    assert hw.gpus == (GpuInfo(0, "NVIDIA GeForce RTX 4090", 24 * GiB, 22 * GiB, "cuda"),)
    assert hw.rebuild_hint == CUDA_REBUILD_HINT and hw.usable_gpus == ()
    assert probe_hardware(gpu_offload_supported=True).rebuild_hint is None


def test_apple_default_working_set() -> None:
    assert default_metal_working_set(16 * 10**9) == int(16 * 10**9 * 2 / 3)
    assert default_metal_working_set(64 * 10**9) == int(64 * 10**9 * 3 / 4)
