"""What this machine has to run a model on: CPU, RAM, and GPU memory that is free right now.

Every probe is best-effort: a missing NVIDIA driver, no ``nvidia-ml-py``, no PyObjC, an
unreadable ``/proc`` — each just means "that part is absent", never a crash. The planner works
from *free* memory (what another app already holds is not ours), the way llama.cpp's ``--fit``
does. Runs on any thread; takes tens of milliseconds (NVML init), so not on the GUI thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Literal

import psutil

GiB = 1024**3
# Matches the README: GPU builds pass their flags to `make`, and `make clean` drops the old venv.
CUDA_REBUILD_HINT = 'CMAKE_ARGS="-DGGML_CUDA=on" make clean run'
METAL_REBUILD_HINT = "make clean run"

GpuBackend = Literal["cuda", "metal", "override"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int  # what a new allocation can get now; on Apple: the GPU working-set limit
    backend: GpuBackend
    unified_memory: bool = False  # Apple Silicon: GPU memory *is* system RAM


@dataclass(frozen=True)
class Hardware:
    cpu_name: str
    physical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GpuInfo, ...]
    gpu_offload_supported: bool  # the installed llama.cpp build can use a GPU at all
    rebuild_hint: str | None = None  # set when a GPU is here but the build cannot use it

    @property
    def usable_gpus(self) -> tuple[GpuInfo, ...]:
        """GPUs llama.cpp can actually offload to with this build."""
        return self.gpus if self.gpu_offload_supported else ()

    @property
    def unified_memory(self) -> bool:
        return any(g.unified_memory for g in self.usable_gpus)

    def with_gpu_override(self, nbytes: int, name: str = "GPU") -> Hardware:
        """Pretend there is exactly one GPU with ``nbytes`` free (``--gpu-memory 8GiB``).

        For GPUs the probe cannot see (AMD, Intel via Vulkan) and for "what if" planning: the
        override assumes the build can offload, so no rebuild hint either.
        """
        fake = GpuInfo(index=0, name=name, total_bytes=nbytes, free_bytes=nbytes,
                       backend="override")
        return dataclasses.replace(self, gpus=(fake,), gpu_offload_supported=True,
                                   rebuild_hint=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (API ``/api/hardware``, ``hearth show --json``)."""
        data = dataclasses.asdict(self)
        data["gpus"] = [dataclasses.asdict(g) for g in self.gpus]
        return data


_SIZE_RE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8GiB', '8 GB', '8g', '512MiB' -> bytes. Binary units either way: GPU vendors mean GiB."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size; write it like 8GiB or 512MiB.")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def _cpu_name() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith(("model name", "Hardware", "cpu model")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        name = _sysctl("machdep.cpu.brand_string")
        if name:
            return name
    return platform.processor() or platform.machine() or "unknown CPU"


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _nvidia_gpus() -> tuple[GpuInfo, ...]:
    """NVIDIA GPUs through NVML: the same counters nvidia-smi shows, no CUDA toolkit needed."""
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):  # no driver / libnvidia-ml: no NVIDIA GPU for us
        return ()
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(
                index=i, name=name.decode() if isinstance(name, bytes) else str(name),
                total_bytes=int(mem.total), free_bytes=int(mem.free), backend="cuda"))
    except pynvml.NVMLError:
        pass  # a GPU that fell off the bus mid-probe: report the ones we could read
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return tuple(gpus)


def default_metal_working_set(ram_total: int) -> int:
    """macOS's default cap on GPU-resident memory when Metal cannot be asked directly.

    Metal's ``recommendedMaxWorkingSetSize`` is what llama.cpp's Metal backend reports as the
    device's memory. On stock macOS it comes out at about two thirds of RAM on machines with up
    to 36 GB and three quarters above that (the ``iogpu.wired_limit_mb`` default, as
    llama.cpp's and Ollama's Apple users have measured); we assume the same split.
    """
    fraction = 2 / 3 if ram_total <= 36 * 10**9 else 3 / 4
    return int(ram_total * fraction)


def _apple_gpu(ram_total: int) -> tuple[GpuInfo, ...]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return ()
    limit: int | None = None
    name = "Apple GPU"
    try:  # PyObjC's Metal bindings, when installed, give the exact figure
        import Metal

        device = Metal.MTLCreateSystemDefaultDevice()
        if device is not None:
            limit = int(device.recommendedMaxWorkingSetSize())
            name = str(device.name())
    except Exception:  # any PyObjC failure just means: fall back to the default fraction
        limit = None
    if limit is None:
        name = _sysctl("machdep.cpu.brand_string") or name  # "Apple M2 Pro"
        wired_mb = _sysctl("iogpu.wired_limit_mb")  # a user-raised limit overrides the default
        limit = (int(wired_mb) * 1024**2 if wired_mb and wired_mb.isdigit() and int(wired_mb)
                 else default_metal_working_set(ram_total))
    return (GpuInfo(index=0, name=name, total_bytes=limit, free_bytes=limit, backend="metal",
                    unified_memory=True),)


def probe_hardware(gpu_offload_supported: bool | None = None) -> Hardware:
    """Probe this machine now. ``gpu_offload_supported`` is injected by callers that know it
    (tests, the engine); by default it is asked of the installed llama.cpp build."""
    if gpu_offload_supported is None:
        from backend.engine.capabilities import gpu_offload_supported as build_can_offload

        gpu_offload_supported = build_can_offload()
    vm = psutil.virtual_memory()
    gpus = _nvidia_gpus() or _apple_gpu(int(vm.total))
    hint = None
    if gpus and not gpu_offload_supported:
        hint = METAL_REBUILD_HINT if gpus[0].backend == "metal" else CUDA_REBUILD_HINT
    return Hardware(
        cpu_name=_cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        gpus=gpus,
        gpu_offload_supported=gpu_offload_supported,
        rebuild_hint=hint,
    )
