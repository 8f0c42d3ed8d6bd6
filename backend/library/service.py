"""``LibraryService``: the model-library operations the Models page needs, in one place.

It composes what the library modules already do (local listing, catalog, Hub search, remote
fit verdicts, downloads) and adds what a GUI needs on top: sizes read once per listing (so
item models never stat files), fit badges for every quant of a repo, a recommendation for
this machine, importing a GGUF the user picked, and one shared ``DownloadManager``.

Threading contract: every method is safe from any thread. Methods marked *blocking* touch the
disk, the network or the hardware probe and must be called from a worker thread (the GUI uses
``asyncio.to_thread``); the rest return at once. Download progress reaches subscribers on the
manager's worker threads, never the caller's.

Importing registers the file in place (``settings.library.extra_files``) instead of copying
it: GGUF files are often many gigabytes, so a copy would double the disk use and make a drop
take minutes, and the user's file stays where they keep it. Hearth never deletes such a file;
"delete" only takes it off the list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from backend.errors import BackendError, InvalidRequest
from backend.hardware.planner import GPU_RUNTIME_BYTES, PlanRequest, Verdict, plan_offload
from backend.hardware.probe import Hardware, probe_hardware
from backend.library.catalog import CatalogEntry, load_catalog
from backend.library.downloads import DownloadManager, DownloadProgress
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata
from backend.library.local import LocalModel, delete_model, list_models, resolve_model
from backend.library.quants import QuantOption, pick_quant
from backend.library.remote_fit import remote_metadata
from backend.paths import hearth_paths
from backend.settings_store import SettingsStore

if TYPE_CHECKING:  # huggingface_hub takes ~0.2 s to import: only when the Hub is used
    from backend.library.hub import RepoSummary

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
_FIT_WORKERS = 4  # header reads in parallel: a repo with 20 quants answers in a few seconds


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

    @property
    def file_name(self) -> str:
        return self.option.primary_file.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LibraryModel:
    """A local model with its size read once (``LocalModel.size_bytes`` stats on every call)."""

    model: LocalModel
    size_bytes: int

    @property
    def id(self) -> str:
        return self.model.id


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
              margin_bytes: int = 1 << 30) -> BestPick | None:
    """The catalog model this machine runs best, at its default quant (the quality/size sweet
    spot): the largest that fits wholly in free GPU memory; else, on the CPU, the largest that
    stays quick there and leaves half the free RAM to everything else; None if nothing does.

    Pure, from the catalog's approximate sizes: it has to answer before any network access.
    """
    def need(entry: CatalogEntry) -> int:
        return int(entry.approx_size() * _CONTEXT_ALLOWANCE)

    candidates = sorted((e for e in entries if e.approx_size() > 0),
                        key=lambda e: (e.approx_size(), e.alias))
    gpus = hardware.usable_gpus
    if gpus:
        vram = sum(g.free_bytes for g in gpus)
        if hardware.unified_memory:  # Apple: the GPU's share comes out of the same RAM
            vram = min(vram, hardware.ram_available_bytes)
        budget = vram - margin_bytes - GPU_RUNTIME_BYTES * len(gpus)
        on_gpu = [e for e in candidates if need(e) <= budget]
        if on_gpu:
            best = on_gpu[-1]
            spare = (vram - need(best) - GPU_RUNTIME_BYTES * len(gpus)) / 2**30
            return BestPick(best, best.default_quant, best.approx_size(), FitBadge(
                "full_gpu", "Full GPU", f"It fits in the GPU's {vram / 2**30:.1f} GiB of free "
                f"memory with about {spare:.1f} GiB to spare, so replies will be fast."))
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


class LibraryService:
    def __init__(self, store: SettingsStore, *, hardware: Hardware | None = None,
                 catalog: Sequence[CatalogEntry] | None = None,
                 download_options: dict[str, float] | None = None) -> None:
        """``hardware`` and ``catalog`` are fixed by tests; ``download_options`` go to the
        ``DownloadManager`` (retry and stall timings)."""
        self._store = store
        self._hardware = hardware
        self._catalog = tuple(catalog) if catalog is not None else None
        self._download_options = dict(download_options or {})
        self._lock = threading.Lock()  # guards the lazy members and settings writes
        self._manager: DownloadManager | None = None
        self._headers: dict[tuple[str, str, str], GgufMetadata] = {}  # repo, revision, file

    # -- local models ----------------------------------------------------------------------
    def local_models(self) -> list[LibraryModel]:
        """Blocking (walks the models folders). Built in first, then downloaded, then the rest."""
        return [LibraryModel(m, m.size_bytes) for m in list_models(self._store.snapshot())]

    def delete(self, model_id: str) -> LocalModel:
        """Blocking. Deletes a downloaded model's files; an imported file is only taken off the
        list (the file stays where it is); built-in and Hugging Face cache models are refused
        with a sentence saying why."""
        model = resolve_model(model_id, models=list_models(self._store.snapshot()))
        if model.source == "file":
            files = self._store.snapshot().library.extra_files
            keep = tuple(f for f in files if not _same_file(Path(f).expanduser(), model.path))
            if len(keep) != len(files):
                self._set_extra_files(lambda _: keep)
                return model
        return delete_model(model_id, self._store.snapshot())

    def import_file(self, path: Path | str) -> LocalModel:
        """Blocking. Check that ``path`` is a readable GGUF model, then list it (used in
        place). Importing a file already listed returns its entry."""
        path = Path(path).expanduser()
        if path.suffix.lower() != ".gguf":
            raise InvalidRequest(f"'{path.name}' is not a .gguf file. Hearth runs GGUF models; "
                                 "find GGUF builds of a model under Discover.")
        if not path.is_file():
            raise InvalidRequest(f"There is no file at {path}. Check that it still exists and "
                                 "try again.")
        try:  # the whole header and the data's size: a damaged file is refused here
            meta = read_gguf_metadata(path)
        except BackendError as exc:
            raise InvalidRequest(f"'{path.name}' can't be imported: {exc.user_message}") from exc
        if meta.n_layer <= 0:
            raise InvalidRequest(f"'{path.name}' is a GGUF file but holds no language model "
                                 "(it may be a vision projector or an adapter).")
        if meta.problem:  # well-formed, but llama.cpp would refuse it (or crash on it)
            raise InvalidRequest(f"'{path.name}' can't be imported: {meta.problem}")
        path = path.resolve()
        existing = self._find_by_path(path)
        if existing is not None:
            return existing
        self._set_extra_files(lambda files: (*files, str(path)))
        found = self._find_by_path(path)
        if found is None:  # another model already has this name, and the first one wins
            self._set_extra_files(lambda files: tuple(f for f in files if f != str(path)))
            raise InvalidRequest(f"Another model is already named '{path.stem}'. Rename the "
                                 "file, then import it again.")
        return found

    def _set_extra_files(self, change: Callable[[tuple[str, ...]], tuple[str, ...]]) -> None:
        self._store.update(lambda s: s.model_copy(update={"library": s.library.model_copy(
            update={"extra_files": change(s.library.extra_files)})}))

    def _find_by_path(self, path: Path) -> LocalModel | None:
        return next((m for m in list_models(self._store.snapshot())
                     if _same_file(m.path, path)), None)

    # -- discovering -----------------------------------------------------------------------
    def catalog(self) -> tuple[CatalogEntry, ...]:
        """Fast after the first call (the catalog file is read once)."""
        return self._catalog if self._catalog is not None else load_catalog()

    def search(self, query: str, limit: int = 30) -> list[RepoSummary]:
        """Blocking. GGUF repos on the Hub; raises ``HubUnavailable`` with a sentence."""
        from backend.library import hub

        return hub.search_models(query, limit=limit)

    def quant_options(self, repo_id: str) -> list[QuantOption]:
        """Blocking. The repo's downloadable variants, smallest first."""
        from backend.library import hub

        return hub.list_quants(repo_id)

    def quants(self, repo_id: str) -> list[QuantChoice]:
        """Blocking. Every variant of ``repo_id`` with its fit verdict on this machine, each
        from the remote GGUF header (a few MB of ranged reads, in parallel, cached)."""
        options = self.quant_options(repo_id)
        hardware = self.hardware()
        with ThreadPoolExecutor(_FIT_WORKERS, thread_name_prefix="fit") as pool:
            fits = list(pool.map(lambda o: self.fit(repo_id, o, hardware), options))
        return [QuantChoice(repo_id, o, f) for o, f in zip(options, fits, strict=True)]

    def fit(self, repo_id: str, option: QuantOption, hardware: Hardware | None = None
            ) -> FitBadge:
        """Blocking. One variant's verdict; an unreadable header gives an "Unknown" badge
        with the reason, never an exception (the file may still download fine)."""
        key = (repo_id, option.revision, option.primary_file)
        try:
            with self._lock:
                meta = self._headers.get(key)
            if meta is None:
                meta, _ = remote_metadata(repo_id, option)
                with self._lock:
                    self._headers[key] = meta
            plan = plan_offload(meta, hardware or self.hardware(), self._plan_request())
        except BackendError as exc:
            return FitBadge("unknown", "Unknown", "Hearth couldn't read this file's header to "
                            f"check the fit: {exc.user_message}")
        return badge_for(plan.verdict, plan.n_gpu_layers, plan.n_layers_total, plan.reason)

    def _plan_request(self) -> PlanRequest:
        """Plan as a load would with the user's settings, so the badge matches what happens."""
        engine = self._store.snapshot().engine
        return PlanRequest(n_ctx=engine.n_ctx, kv_cache_type=engine.kv_cache_type,
                           flash_attn=engine.flash_attn,
                           n_parallel=engine.parallel, n_gpu_layers=engine.gpu_layers,
                           margin_bytes=engine.memory_margin_mib << 20)

    def hardware(self) -> Hardware:
        """Blocking the first time (the probe takes tens of ms), cached afterwards: free memory
        moves while models load and unload, and badges that flicker help nobody."""
        with self._lock:
            if self._hardware is None:
                self._hardware = probe_hardware()
            return self._hardware

    def best_pick(self) -> BestPick | None:
        """Blocking the first time (hardware probe). What the welcome panel offers."""
        margin = self._store.snapshot().engine.memory_margin_mib << 20
        return pick_best(self.catalog(), self.hardware(), margin)

    # -- downloads -------------------------------------------------------------------------
    @property
    def downloads(self) -> DownloadManager:
        """The one manager; created on first use (blocking: it reads ``downloads.json`` and
        continues unfinished downloads that weren't paused)."""
        with self._lock:
            if self._manager is None:
                chosen = self._store.snapshot().library.models_dir
                models_dir = Path(chosen).expanduser() if chosen else hearth_paths().models_dir
                self._manager = DownloadManager(models_dir=models_dir,
                                                **self._download_options)  # type: ignore[arg-type]
            return self._manager

    def download(self, repo_id: str, option: QuantOption) -> str:
        """Blocking (disk check, state file). Returns the download's id."""
        return self.downloads.add(repo_id, option)

    def download_quant(self, repo_id: str, quant: str | None = None) -> str:
        """Blocking (asks the Hub for exact sizes and hashes first): the welcome panel's
        one-click download of the best pick."""
        option = pick_quant(self.quant_options(repo_id), quant)
        if option is None:
            raise InvalidRequest(f"'{repo_id}' has no {quant or 'GGUF'} file to download. "
                                 "Pick another quant under Discover.")
        return self.download(repo_id, option)

    def pause(self, download_id: str) -> None:
        self.downloads.pause(download_id)

    def resume(self, download_id: str) -> None:
        self.downloads.resume(download_id)

    def cancel(self, download_id: str) -> None:
        self.downloads.cancel(download_id)

    def subscribe(self, callback: Callable[[DownloadProgress], None]) -> Callable[[], None]:
        return self.downloads.subscribe(callback)

    def close(self) -> None:
        """Stop download workers; unfinished downloads are saved and continue next start."""
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
