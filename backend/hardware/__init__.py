"""The machine a model runs on (``probe``) and how to fit a model onto it (``planner``).

``probe_hardware()`` touches the system (NVML, psutil, Metal); ``plan_offload()`` is a pure
function of a model's metadata, a ``Hardware`` value and a request, so it is table-tested.
"""

from __future__ import annotations

from backend.hardware.probe import GpuInfo, Hardware, parse_size, probe_hardware

__all__ = ["GpuInfo", "Hardware", "parse_size", "probe_hardware"]
