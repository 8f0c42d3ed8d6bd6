"""Fit badges and picks: what the Models page says about how a model fits this machine.

``FitBadge`` is a planner verdict as a short label and a sentence; ``QuantChoice`` is one
downloadable variant with its badge; ``best_quant`` picks the variant to offer first among a
repo's; ``pick_best`` picks the catalog model the welcome offers; ``CatalogCard`` is a catalog
model as the Discover tab shows it. Pure values and functions: no I/O, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from backend.errors import BackendError
from backend.hardware.planner import GPU_RUNTIME_BYTES, PlanRequest, Verdict
from backend.hardware.probe import Hardware
from backend.library.catalog import CatalogEntry
from backend.library.catalog_fit import estimate_fit
from backend.library.quants import QuantOption

FitKind = Literal["full_gpu", "partial", "cpu", "too_large", "unknown"]

# A CPU pick is sized for replies at reading speed on an ordinary laptop: a 3–4B model at
# Q4 streams ~5–10 tokens/s from system RAM; anything larger feels stuck on most CPUs.
CPU_PICK_MAX_BYTES = 2_600_000_000
# CPU decoding reads every weight once per token and scales with the cores: measured here,
# 2 cores stream a 0.25 GB model at ~40 tokens/s. Allowing ~0.6 GB of weights per physical core
# keeps a pick near 8 tokens/s (reading speed): 1.2 GB on 2 cores, the 2.6 GB cap from 4.
CPU_PICK_BYTES_PER_CORE = 600_000_000
# Weights plus room for a modest context and compute buffers, for the pre-download estimate
# (the planner's exact numbers need the header, which the catalog doesn't have).
_CONTEXT_ALLOWANCE = 1.15


@dataclass(frozen=True)
class FitBadge:
    """What the Models page shows next to a quant: a short label and the planner's reason."""

    kind: FitKind
    label: str  # "Full GPU", "Partial 20/33", "CPU", "Too large", "Unknown"
    reason: str  # one sentence, for the tooltip


@dataclass(frozen=True)
class QuantChoice:
    repo: str
    option: QuantOption
    fit: FitBadge
    # From the catalog alone: no files yet (the Hub names them), an approximate size and a fit
    # from the catalog's shape (``catalog_fit``). Downloading one asks the Hub first.
    estimated: bool = False

    @property
    def file_name(self) -> str:
        return self.option.primary_file.rsplit("/", 1)[-1] if self.option.files else ""


@dataclass(frozen=True)
class CatalogCard:
    """What the Discover tab shows for a catalog model, with no network: its entry, every
    quant with a fit for this machine, and the quant that runs best here."""

    entry: CatalogEntry
    quants: tuple[QuantChoice, ...]
    best: QuantChoice | None
    recommended: bool = False  # the welcome's best pick for this machine


_VERDICT_RANK = {"full_gpu": 0, "partial": 1, "cpu": 2, "too_large": 3, "unknown": 4}


def best_quant(choices: Sequence[QuantChoice], default_quant: str | None = None
               ) -> QuantChoice | None:
    """The variant to offer first on this machine: the largest (best quality) that runs wholly
    on the GPU. Otherwise, among the variants with the best verdict there is (partial offload,
    then CPU, then too large), the repo's default quant (the usual size/quality balance), or
    else the smallest: off the GPU, fewer bytes per token read from RAM is faster, and a model
    that doesn't fit at all shows how far off its smallest variant is."""
    if not choices:
        return None
    full = [c for c in choices if c.fit.kind == "full_gpu"]
    if full:
        return max(full, key=lambda c: c.option.total_size)
    best_kind = min(_VERDICT_RANK.get(c.fit.kind, 4) for c in choices)
    runs = [c for c in choices if _VERDICT_RANK.get(c.fit.kind, 4) == best_kind]
    default = next((c for c in runs if c.option.quant == default_quant), None)
    return default or min(runs, key=lambda c: c.option.total_size)


@dataclass(frozen=True)
class BestPick:
    entry: CatalogEntry
    quant: str
    size_bytes: int  # the catalog's approximate size
    fit: FitBadge


def badge_for(verdict: Verdict, n_gpu_layers: int, n_layers_total: int,
              reason: str) -> FitBadge:
    labels = {Verdict.FULL_GPU: "Full GPU", Verdict.CPU: "CPU", Verdict.TOO_LARGE: "Too large",
              Verdict.PARTIAL: f"Partial {n_gpu_layers}/{n_layers_total}"}
    return FitBadge(verdict.value, labels[verdict], reason)  # type: ignore[arg-type]


def pick_best(entries: Sequence[CatalogEntry], hardware: Hardware,
              margin_bytes: int = 1 << 30, request: PlanRequest | None = None
              ) -> BestPick | None:
    """The catalog model this machine runs best, at its default quant (the quality/size sweet
    spot): the largest that fits wholly in free GPU memory; else, on the CPU, the largest that
    stays quick there and leaves half the free RAM to everything else; None if nothing does.

    Pure, from the catalog alone: it has to answer before any network access. "Fits on the
    GPU" is the planner's verdict on the catalog's estimate (``catalog_fit``) with the load
    settings in ``request``, so the welcome and Discover's badges agree; an entry the catalog
    can't describe falls back to its size plus an allowance for context.
    """
    plan_request = request or PlanRequest(margin_bytes=margin_bytes)

    def need(entry: CatalogEntry) -> int:
        return int(entry.approx_size() * _CONTEXT_ALLOWANCE)

    reasons: dict[str, str] = {}  # alias → the planner's sentence, for the pick's tooltip

    def fits_gpu(entry: CatalogEntry, budget: int) -> bool:
        try:
            plan = estimate_fit(entry, entry.default_quant, hardware, plan_request)
        except BackendError:
            plan = None
        if plan is None:
            return need(entry) <= budget
        reasons[entry.alias] = f"{plan.reason.removesuffix('.')}, so replies will be fast."
        return plan.verdict is Verdict.FULL_GPU

    # The welcome offers a model to chat with: an embedding model can't reply.
    candidates = sorted((e for e in entries if e.approx_size() > 0 and e.kind == "chat"),
                        key=lambda e: (e.approx_size(), e.alias))
    gpus = hardware.usable_gpus
    if gpus:
        vram = sum(g.free_bytes for g in gpus)
        if hardware.unified_memory:  # Apple: the GPU's share comes out of the same RAM
            vram = min(vram, hardware.ram_available_bytes)
        budget = vram - margin_bytes - GPU_RUNTIME_BYTES * len(gpus)
        on_gpu = [e for e in candidates if fits_gpu(e, budget)]
        if on_gpu:
            best = on_gpu[-1]
            spare = max(0, vram - need(best) - GPU_RUNTIME_BYTES * len(gpus)) / 2**30
            return BestPick(best, best.default_quant, best.approx_size(), FitBadge(
                "full_gpu", "Full GPU", reasons.get(best.alias) or f"It fits in the GPU's "
                f"{vram / 2**30:.1f} GiB of free memory with about {spare:.1f} GiB to spare, "
                "so replies will be fast."))
    room = (hardware.ram_available_bytes - margin_bytes) // 2
    quick = min(CPU_PICK_MAX_BYTES, max(1, hardware.physical_cores) * CPU_PICK_BYTES_PER_CORE)
    on_cpu = [e for e in candidates if need(e) <= room and e.approx_size() <= quick]
    if not on_cpu:
        return None
    best = on_cpu[-1]
    why = ("no usable GPU was found" if not gpus else
           "no catalog model fits in the GPU's free memory")
    return BestPick(best, best.default_quant, best.approx_size(), FitBadge(
        "cpu", "CPU", f"It runs on the CPU because {why}; at this size replies still come at "
        f"reading speed with {hardware.ram_available_bytes / 2**30:.1f} GiB of free memory."))
