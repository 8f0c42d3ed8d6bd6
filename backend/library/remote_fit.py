"""Fit badges before download: a remote GGUF's header, read by HTTP ranges, through the
offload planner against this machine's free memory."""

from __future__ import annotations

from backend.hardware.planner import OffloadPlan, PlanRequest, plan_offload
from backend.hardware.probe import Hardware, probe_hardware
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata_from_range
from backend.library.projector import ProjectorInfo, read_projector_from_range
from backend.library.quants import QuantOption


def _hub():  # type: ignore[no-untyped-def]
    """huggingface_hub takes ~0.2 s to import; the GUI's first window must not wait for it."""
    from backend.library import hub

    return hub


def remote_metadata(repo_id: str, option: QuantOption) -> tuple[GgufMetadata, int]:
    """Header of the option's first file (where a split model's metadata lives), and the
    number of bytes fetched to read it."""
    first, size = option.files[0], option.sizes[0]
    fetched = 0

    def fetch(start: int, stop: int) -> bytes:
        nonlocal fetched
        data = _hub().fetch_range(repo_id, first, start, min(stop, size),
                               revision=option.revision)
        fetched += len(data)
        return data

    meta = read_gguf_metadata_from_range(fetch, size)
    return meta, fetched


def remote_projector(repo_id: str, option: QuantOption) -> ProjectorInfo | None:
    """The header of the projector ``option`` downloads with the model, or None."""
    if option.mmproj is None:
        return None
    size = option.sizes[option.files.index(option.mmproj)]

    def fetch(start: int, stop: int) -> bytes:
        return _hub().fetch_range(repo_id, option.mmproj, start, min(stop, size),
                                  revision=option.revision)

    return read_projector_from_range(fetch, size)


def remote_fit(repo_id: str, option: QuantOption, hardware: Hardware | None = None,
               request: PlanRequest | None = None) -> OffloadPlan:
    """The verdict (Full GPU / Partial x/y / CPU / Too large) and its reason, pre-download."""
    meta, _ = remote_metadata(repo_id, option)
    return plan_offload(meta, hardware or probe_hardware(), request)
