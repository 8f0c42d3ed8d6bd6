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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import BackendError, InvalidRequest
from backend.hardware.planner import PlanRequest, plan_offload
from backend.hardware.probe import Hardware, probe_hardware
from backend.library.catalog import CatalogEntry, load_catalog
from backend.library.catalog_fit import estimate_fit
from backend.library.downloads import DownloadManager, DownloadProgress
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata
from backend.library.import_pairs import ImportOutcome, import_together
from backend.library.local import LocalModel, delete_model, list_models, resolve_model
from backend.library.picks import (
    BestPick,
    CatalogCard,
    FitBadge,
    QuantChoice,
    badge_for,
    best_quant,
    pick_best,
)
from backend.library.projector import ProjectorInfo, check_pair
from backend.library.quants import QuantOption, pick_quant
from backend.library.remote_fit import remote_metadata, remote_projector
from backend.library.transfer import human_size
from backend.paths import hearth_paths
from backend.settings_store import SettingsStore

if TYPE_CHECKING:  # huggingface_hub takes ~0.2 s to import: only when the Hub is used
    from backend.library.hub import RepoSummary
    from backend.settings import Settings

_FIT_WORKERS = 4  # header reads in parallel: a repo with 20 quants answers in a few seconds


@dataclass(frozen=True)
class LibraryModel:
    """A local model with its size read once (``LocalModel.size_bytes`` stats on every call)."""

    model: LocalModel
    size_bytes: int

    @property
    def id(self) -> str:
        return self.model.id


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
        self._by_quant: dict[tuple[str, str], GgufMetadata] = {}  # repo, quant: last read
        self._projectors: dict[tuple[str, str, str], ProjectorInfo] = {}  # repo, rev, file

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
                self._record_projector(model.path, None)
                return model
        return delete_model(model_id, self._store.snapshot())

    def import_file(self, path: Path | str, mmproj: Path | str | None = None) -> LocalModel:
        """Blocking. Check that ``path`` is a readable GGUF model, then list it (used in
        place). Importing a file already listed returns its entry. ``mmproj``: a vision
        projector to pair with it (checked against the model: see ``projector.check_pair``),
        recorded in the settings so the model can see images."""
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
        projector = self._checked_projector(mmproj, path) if mmproj is not None else None
        path = path.resolve()
        found = self._find_by_path(path)
        if found is None:
            self._set_extra_files(lambda files: (*files, str(path)))
            found = self._find_by_path(path)
            if found is None:  # another model already has this name, and the first one wins
                self._set_extra_files(lambda files: tuple(f for f in files if f != str(path)))
                raise InvalidRequest(f"Another model is already named '{path.stem}'. Rename "
                                     "the file, then import it again.")
        if projector is not None:
            self._record_projector(found.path, projector)
            found = self._find_by_path(path) or found
        return found

    def import_files(self, paths: Sequence[Path]) -> ImportOutcome:
        """Blocking. The window's import: models, each paired with a vision projector picked
        with it that fits (``import_pairs``)."""
        return import_together(self, paths)

    def _checked_projector(self, mmproj: Path | str, model: Path) -> Path:
        projector = Path(mmproj).expanduser()
        if projector.suffix.lower() != ".gguf" or not projector.is_file():
            raise InvalidRequest(f"There is no .gguf projector file at {projector}. Pick the "
                                 "mmproj .gguf file that came with the model.")
        try:
            check_pair(projector, model, f"'{model.name}'")
        except BackendError as exc:
            raise InvalidRequest(f"'{projector.name}' can't be paired with '{model.name}': "
                                 f"{exc.user_message}") from exc
        return projector.resolve()

    def _record_projector(self, model: Path, projector: Path | None) -> None:
        """Pair ``model`` with ``projector`` in the settings (None: forget its pair)."""
        key = str(model)

        def change(s: Settings) -> Settings:
            pairs = tuple(p for p in s.library.projectors if p[0] != key)
            mine = ((key, str(projector)),) if projector is not None else ()
            return s.model_copy(update={"library": s.library.model_copy(
                update={"projectors": (*pairs, *mine)})})

        self._store.update(change)

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
                    self._by_quant[(repo_id, option.quant)] = meta  # catalog cards use it
            request = replace(self._plan_request(), projector=self._projector(repo_id, option))
            plan = plan_offload(meta, hardware or self.hardware(), request)
        except BackendError as exc:
            return FitBadge("unknown", "Unknown", "Hearth couldn't read this file's header to "
                            f"check the fit: {exc.user_message}")
        return badge_for(plan.verdict, plan.n_gpu_layers, plan.n_layers_total, plan.reason)

    def _projector(self, repo_id: str, option: QuantOption) -> ProjectorInfo | None:
        """The header of the projector downloaded with ``option`` (cached), or None."""
        if option.mmproj is None:
            return None
        key = (repo_id, option.revision, option.mmproj)
        with self._lock:
            found = self._projectors.get(key)
        if found is None:
            found = remote_projector(repo_id, option)
            with self._lock:
                self._projectors[key] = found
        return found

    def fits_with_projector(self, repo_id: str, option: QuantOption) -> bool:
        """Blocking. Whether the planner says ``option`` (with its projector) can load here;
        ``hearth pull`` asks it to pick a smaller projector than f16 when it can't."""
        return self.fit(repo_id, option).kind != "too_large"

    def catalog_cards(self) -> list[CatalogCard]:
        """Blocking the first time (hardware probe); no network. Every catalog model with a
        fit for each quant: from its header when the Hub already gave it this session, else
        estimated from the catalog's shape and sizes (``catalog_fit``), said so in the reason."""
        hardware, request = self.hardware(), self._plan_request()
        pick = self.best_pick()
        cards = []
        for entry in self.catalog():
            choices = tuple(self._catalog_choice(entry, quant, size, hardware, request)
                            for quant, size in entry.quants.items())
            cards.append(CatalogCard(entry, choices, best_quant(choices, entry.default_quant),
                                     pick is not None and pick.entry.repo == entry.repo))
        return cards

    def _catalog_choice(self, entry: CatalogEntry, quant: str, size: int, hardware: Hardware,
                        request: PlanRequest) -> QuantChoice:
        option = QuantOption(quant, (), (), (), size)
        with self._lock:
            meta = self._by_quant.get((entry.repo, quant))
        try:
            if meta is not None:  # the real header, read earlier from the Hub
                plan = plan_offload(meta, hardware, request)
                return QuantChoice(entry.repo, option, badge_for(
                    plan.verdict, plan.n_gpu_layers, plan.n_layers_total, plan.reason), True)
            estimate = estimate_fit(entry, quant, hardware, request)
        except BackendError as exc:  # a shape the planner refuses: say so, don't guess
            return QuantChoice(entry.repo, option, FitBadge("unknown", "Unknown",
                                                            exc.user_message), True)
        if estimate is None:
            return QuantChoice(entry.repo, option, FitBadge(
                "unknown", "Unknown", "The catalog doesn't describe this model's shape; open "
                "it while online to check its files against this computer."), True)
        badge = badge_for(estimate.verdict, estimate.n_gpu_layers, estimate.n_layers_total,
                          f"Estimated from the catalog (about {human_size(size)} at {quant}): "
                          f"{estimate.reason}")
        return QuantChoice(entry.repo, option, badge, True)

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
        return pick_best(self.catalog(), self.hardware(), margin, self._plan_request())

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
        """Blocking (disk check, state file; for a vision model the projectors' headers, and
        the repo's file list when its f16 projector doesn't fit here). Returns the download's
        id. A vision model's projector is the one the planner picks for this machine
        (``pull.with_fitting_projector``, as `hearth pull` picks it)."""
        from backend.library import hub
        from backend.library.pull import with_fitting_projector

        option = with_fitting_projector(repo_id, option, self.fits_with_projector,
                                        lambda: hub.list_files(repo_id, option.revision)[0])
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
