"""``hearth pull | list | rm | show | hardware``: the model library from the terminal.

Each command is one call on the ``Hearth`` that ``backend/cli.py`` opened, then printing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from backend.api import (
    Hardware,
    Hearth,
    LocalModel,
    PlanRequest,
    capabilities,
    parse_size,
    plan_offload,
    read_projector,
    resolve_pull,
)
from backend.errors import InvalidRequest


def add_library_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pull = sub.add_parser("pull", help="download a model: owner/repo[:QUANT] or a catalog name")
    pull.add_argument("model")
    listing = sub.add_parser("list", help="list models on this machine")
    listing.add_argument("--json", action="store_true")
    rm = sub.add_parser("rm", help="delete a downloaded model")
    rm.add_argument("model")
    show = sub.add_parser("show", help="model details, and how it would load here (--plan)")
    show.add_argument("model")
    show.add_argument("--plan", action="store_true", help="show the offload plan")
    show.add_argument("--ctx", type=int, default=None, help="context length to plan for")
    show.add_argument("--gpu-memory", default=None,
                      help="pretend a GPU with this much free memory, e.g. 8GiB")
    show.add_argument("--parallel", type=int, default=1)
    show.add_argument("--json", action="store_true")
    imp = sub.add_parser("import", help="add a GGUF file to the library (used in place), "
                         "with its vision projector: import MODEL.gguf --mmproj PROJ.gguf")
    imp.add_argument("file", help="the model's .gguf file")
    imp.add_argument("--mmproj", default=None, metavar="PROJ.gguf",
                     help="the model's vision projector (mmproj .gguf): the model can then "
                     "see images")
    add_hardware_command(sub)


def add_mmproj_flag(parser: argparse.ArgumentParser) -> None:
    """``--mmproj`` of ``run`` and ``serve``: a projector paired for this run only."""
    parser.add_argument("--mmproj", default=None, metavar="PROJ.gguf",
                        help="the model's vision projector (mmproj .gguf), paired for this "
                        "run only (checked as `hearth import --mmproj` checks it; import "
                        "the pair to keep it)")


def model_for_run(hearth: Hearth, name: str, mmproj: str | None) -> LocalModel:
    """The local model ``name`` (a path allowed: the person typed it), paired with the
    projector ``mmproj`` when given. The pairing goes through ``import_model``, so it is
    checked exactly as ``hearth import`` checks it (a .gguf file whose projection width is
    the model's ``n_embd``) and every later lookup of the model sees it; ``hearth`` must
    hold in-memory settings, so that it lasts this run only."""
    local = hearth.find_model(name, allow_paths=True)
    if mmproj is None:
        return local
    return hearth.import_model(local.path, mmproj)


def run_library_command(args: argparse.Namespace, hearth: Hearth) -> int | None:
    """Runs the command if it is one of ours; None otherwise."""
    handler = {"pull": _pull, "list": _list, "rm": _rm, "show": _show, "import": _import,
               "hardware": run_hardware_command}.get(args.command)
    return handler(args, hearth) if handler else None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _list(args: argparse.Namespace, hearth: Hearth) -> int:
    models = hearth.models()
    if args.json:
        print(json.dumps([{"id": m.id, "path": str(m.path), "size": m.size_bytes,
                           "source": m.source, "repo": m.repo, "quant": m.quant,
                           "usable": m.usable, "problem": m.problem,
                           "mmproj": str(m.mmproj) if m.mmproj else None,
                           "vision": m.mmproj is not None}
                          for m in models], indent=1))
        return 0
    width = max([len(m.id) for m in models] + [4])
    print(f"{'NAME':<{width}}  {'SIZE':>9}  {'SOURCE':<8}  PATH")
    for m in models:
        seen = "  (vision)" if m.mmproj else ""
        print(f"{m.id:<{width}}  {_human(m.size_bytes):>9}  {m.source:<8}  {m.path}{seen}")
        if m.problem:
            print(f"{'':<{width}}  BROKEN: {m.problem}")
    return 0


def _rm(args: argparse.Namespace, hearth: Hearth) -> int:
    # As in the window: a downloaded model's files are deleted, an added file only unlisted.
    model = hearth.library.delete(args.model)
    if model.source == "file":
        print(f"Removed {model.id} from the list; the file stays at {model.path}.")
    else:
        print(f"Deleted {model.id}.")
    return 0


def _pull(args: argparse.Namespace, hearth: Hearth) -> int:
    # hearth.hardware probes only if asked: when the name picks no quant and Q4_K_M is missing.
    # A vision model's projector comes too: f16 unless the planner says it won't fit here.
    repo, option = resolve_pull(args.model, lambda size: _fits(size, hearth.hardware),
                                hearth.library.fits_with_projector)
    manager = hearth.library.downloads

    def on_progress(event: Any) -> None:  # a worker thread
        if event.repo != repo or event.quant != option.quant:
            return
        pct = 100 * event.bytes_done / event.bytes_total if event.bytes_total else 0
        eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None else ""
        sys.stderr.write(f"\rpulling {repo}:{option.quant} {pct:5.1f}%  "
                         f"{_human(event.bytes_done)}/{_human(event.bytes_total)}  "
                         f"{_human(event.rate_bps)}/s{eta}   ")
        sys.stderr.flush()

    unsubscribe = manager.subscribe(on_progress)
    try:
        download_id = manager.add(repo, option)
        final = manager.wait(download_id)
    except KeyboardInterrupt:
        sys.stderr.write("\nPaused; run the same command again to resume.\n")
        return 130
    finally:
        unsubscribe()  # the manager itself stops with the Hearth (unfinished: resumable)
    sys.stderr.write("\n")
    if final.state != "completed":
        error = final.error.user_message if final.error else f"the download {final.state}"
        print(f"error: {error}", file=sys.stderr)
        return 1
    seen = f" with its vision projector {option.mmproj}" if option.mmproj else ""
    print(f"Pulled {repo}:{option.quant}{seen} ({_human(option.total_size)}) to "
          f"{final.path}. Chat with it: hearth run {repo}:{option.quant}")
    return 0


def _import(args: argparse.Namespace, hearth: Hearth) -> int:
    model = hearth.import_model(args.file, args.mmproj)
    seen = f", seeing images through {model.mmproj.name}" if model.mmproj else ""
    print(f"Imported {model.id} (used in place at {model.path}{seen}). Chat with it: "
          f"hearth run {model.id}")
    return 0


def _fits(size: int, hw: Hardware) -> bool:
    """Rough pre-download check for picking a quant: weights plus a fifth for context and
    buffers must fit in the free VRAM or, failing that, the available RAM."""
    room = max(sum(g.free_bytes for g in hw.usable_gpus), hw.ram_available_bytes)
    return size * 1.2 + (1 << 30) <= room


def _show(args: argparse.Namespace, hearth: Hearth) -> int:
    model = hearth.find_model(args.model, allow_paths=True)  # a path: the person typed it
    meta = hearth.header(model)
    info: dict[str, Any] = {
        "id": model.id, "path": str(model.path), "source": model.source,
        "size": model.size_bytes, "mmproj": str(model.mmproj) if model.mmproj else None,
        "capabilities": list(capabilities(None, meta.chat_template,
                                          embedding_only=meta.embedding_only,
                                          vision=model.mmproj is not None)),
        "metadata": _jsonable(meta)}
    draft = hearth.draft_suggestion(model)
    info["draft_suggestion"] = (None if draft is None else
                                {"name": draft.name, "installed": draft.installed})
    if args.plan:
        info["plan"] = _plan(meta, args, hearth, model.mmproj)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"{model.id}  ({model.source}, {_human(model.size_bytes)})\n  {model.path}")
    print(f"  {'capabilities':<22} {', '.join(info['capabilities'])}")
    if model.mmproj:
        print(f"  {'projector':<22} {model.mmproj}")
    if draft is not None:
        print(f"  {'draft model':<22} {draft.name} (speculative decoding). {draft.advice()}")
    for key, value in info["metadata"].items():
        if key not in ("chat_template",) and value not in (None, "", [], {}):
            print(f"  {key:<22} {value}")
    if args.plan:
        plan = info["plan"]
        print(f"\nPlan: {plan['verdict']}: {plan['reason']}")
        for key, value in plan.items():
            if key not in ("verdict", "reason"):
                print(f"  {key:<22} {value}")
    return 0


def _jsonable(meta: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    data = asdict(meta) if is_dataclass(meta) else dict(vars(meta))
    for key, value in list(data.items()):
        if isinstance(value, (list, tuple)) and len(value) > 8:
            data[key] = f"{len(value)} values"
    return data


def _plan(meta: Any, args: argparse.Namespace, hearth: Hearth, mmproj: Any = None
          ) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    hardware = hearth.probe_hardware()
    if args.gpu_memory:
        try:
            hardware = hardware.with_gpu_override(parse_size(args.gpu_memory))
        except ValueError as exc:
            raise InvalidRequest(f"--gpu-memory: {exc}") from None
    projector = read_projector(mmproj) if mmproj else None  # its weights and compute count
    plan = plan_offload(meta, hardware, PlanRequest(n_ctx=args.ctx, n_parallel=args.parallel,
                                                    projector=projector))
    data = asdict(plan) if is_dataclass(plan) else dict(vars(plan))
    data.pop("inputs", None)  # the metadata and hardware, shown elsewhere
    for side in ("gpu", "cpu"):
        if isinstance(data.get(side), dict) and not args.json:
            data[side] = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in data[side].items())
    return data


def add_hardware_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hw = sub.add_parser("hardware", help="what Hearth sees: CPU, RAM, GPUs, offload support")
    hw.add_argument("--json", action="store_true")


def run_hardware_command(args: argparse.Namespace, hearth: Hearth) -> int:
    hardware = hearth.probe_hardware()
    data = hardware.to_json()
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(f"CPU   {data['cpu_name']} ({data['physical_cores']} physical cores)")
    print(f"RAM   {_human(data['ram_available_bytes'])} free of {_human(data['ram_total_bytes'])}")
    for gpu in data["gpus"]:
        print(f"GPU   {gpu['name']}: {_human(gpu['free_bytes'])} free of "
              f"{_human(gpu['total_bytes'])} ({gpu['backend']})")
    if not data["gpus"]:
        print("GPU   none found")
    print(f"GPU offload in this build: {'yes' if data['gpu_offload_supported'] else 'no'}")
    if data.get("rebuild_hint"):
        print(f"To use the GPU, rebuild: {data['rebuild_hint']}")
    return 0
