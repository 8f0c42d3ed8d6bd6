"""What ``hearth pull NAME`` (and Ollama's /api/pull) fetches: name → repo and quant (and a
vision model's projector)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from backend.errors import InvalidRequest
from backend.library import hub
from backend.library.catalog import find_entry
from backend.library.quants import (
    QuantOption,
    RemoteFile,
    choose_projector,
    group_quants,
    with_projector,
)

DEFAULT_QUANT = "Q4_K_M"


def parse_pull_name(name: str) -> tuple[str, str | None]:
    """``alias`` | ``owner/repo`` | ``owner/repo:QUANT`` → (repo id, quant or None)."""
    entry = find_entry(name)
    if entry:
        return entry.repo, None
    repo, _, quant = name.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")) or ".." in repo:
        raise InvalidRequest(f"'{name}' is neither a catalog name (like llama3.2:3b) nor a "
                             "Hugging Face repo (owner/repo or owner/repo:QUANT).")
    return repo, (quant.upper() or None)


def choose_quant(options: list[QuantOption], quant: str | None,
                 fits: Callable[[int], bool] | None = None) -> QuantOption:
    """The asked-for quant; else Q4_K_M; else the largest that fits; else the smallest."""
    if not options:
        raise InvalidRequest("That repository has no GGUF files to download.")
    if quant is not None:
        for option in options:
            if option.quant == quant:
                return option
        have = ", ".join(o.quant for o in options)
        raise InvalidRequest(f"That repository has no {quant} file. It has: {have}.")
    for option in options:
        if option.quant == DEFAULT_QUANT:
            return option
    by_size = sorted(options, key=lambda o: o.total_size)
    fitting = [o for o in by_size if fits is None or fits(o.total_size)]
    return fitting[-1] if fitting else by_size[0]


PlanFits = Callable[[str, QuantOption], bool]  # (repo, option) → the planner's verdict here


def with_fitting_projector(repo: str, option: QuantOption, plan_fits: PlanFits | None,
                           files: Callable[[], Iterable[RemoteFile]]) -> QuantOption:
    """``option`` with the vision projector to download beside it on this machine: its own
    (f16) unless ``plan_fits(repo, option)`` (the planner's verdict on the model with that
    projector) says no, then the best smaller one that fits, else the smallest
    (``choose_projector``). ``files``: the repo's file list, asked for only then. The one
    choice every pull makes: `hearth pull`, the window's downloads and /api/pull."""
    if option.mmproj is None or plan_fits is None or plan_fits(repo, option):
        return option
    projector = choose_projector(files(), lambda f: plan_fits(repo, with_projector(option, f)))
    return with_projector(option, projector)


def resolve_pull(name: str, fits: Callable[[int], bool] | None = None,
                 plan_fits: PlanFits | None = None) -> tuple[str, QuantOption]:
    """The repo and the variant to download for ``name``. A vision model's projector comes
    with it, as ``with_fitting_projector`` picks it with ``plan_fits``."""
    repo, quant = parse_pull_name(name)
    files, commit = hub.list_files(repo)
    option = choose_quant(group_quants(files, revision=commit), quant, fits)
    return repo, with_fitting_projector(repo, option, plan_fits, lambda: files)
