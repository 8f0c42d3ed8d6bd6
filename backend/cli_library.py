"""``hearth pull | list | rm | show``: the model library from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from backend.library.local import delete_model, list_models, resolve_model


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
    add_hardware_command(sub)


def run_library_command(args: argparse.Namespace) -> int | None:
    """Runs the command if it is one of ours; None otherwise."""
    handler = {"pull": _pull, "list": _list, "rm": _rm, "show": _show,
               "hardware": run_hardware_command}.get(args.command)
    return handler(args) if handler else None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _list(args: argparse.Namespace) -> int:
    models = list_models()
    if args.json:
        print(json.dumps([{"id": m.id, "path": str(m.path), "size": m.size_bytes,
                           "source": m.source, "repo": m.repo, "quant": m.quant,
                           "usable": m.usable, "problem": m.problem}
                          for m in models], indent=1))
        return 0
    width = max([len(m.id) for m in models] + [4])
    print(f"{'NAME':<{width}}  {'SIZE':>9}  {'SOURCE':<8}  PATH")
    for m in models:
        print(f"{m.id:<{width}}  {_human(m.size_bytes):>9}  {m.source:<8}  {m.path}")
        if m.problem:
            print(f"{'':<{width}}  BROKEN: {m.problem}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    model = delete_model(args.model)
    print(f"Deleted {model.id}.")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from backend.library.downloads import DownloadManager
    from backend.library.pull import resolve_pull

    repo, option = resolve_pull(args.model, _fits_this_machine)
    manager = DownloadManager()
    done = threading.Event()
    last: dict[str, Any] = {}

    def on_progress(event: Any) -> None:  # a worker thread
        if event.repo != repo or event.quant != option.quant:
            return
        last["event"] = event
        pct = 100 * event.bytes_done / event.bytes_total if event.bytes_total else 0
        eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None else ""
        sys.stderr.write(f"\rpulling {repo}:{option.quant} {pct:5.1f}%  "
                         f"{_human(event.bytes_done)}/{_human(event.bytes_total)}  "
                         f"{_human(event.rate_bps)}/s{eta}   ")
        sys.stderr.flush()
        if event.state in ("completed", "failed", "cancelled"):
            done.set()

    unsubscribe = manager.subscribe(on_progress)
    try:
        download_id = manager.add(repo, option)
        final = manager.wait(download_id)
    except KeyboardInterrupt:
        sys.stderr.write("\nPaused; run the same command again to resume.\n")
        return 130
    finally:
        unsubscribe()
        manager.close()
    sys.stderr.write("\n")
    if final.state != "completed":
        error = final.error.user_message if final.error else f"the download {final.state}"
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Pulled {repo}:{option.quant} ({_human(option.total_size)}) to {final.path}. "
          f"Chat with it: hearth run {repo}:{option.quant}")
    return 0


def _fits_this_machine(size: int) -> bool:
    """Rough pre-download check for picking a quant: weights plus a fifth for context and
    buffers must fit in the free VRAM or, failing that, the available RAM."""
    from backend.hardware.probe import probe_hardware

    hw = probe_hardware()
    room = max(sum(g.free_bytes for g in hw.usable_gpus), hw.ram_available_bytes)
    return size * 1.2 + (1 << 30) <= room


def _show(args: argparse.Namespace) -> int:
    from backend.library.gguf_meta import read_gguf_metadata

    model = resolve_model(args.model, allow_paths=True)
    meta = read_gguf_metadata(model.path)
    info: dict[str, Any] = {"id": model.id, "path": str(model.path), "source": model.source,
                            "size": model.size_bytes, "metadata": _jsonable(meta)}
    if args.plan:
        info["plan"] = _plan(meta, args)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"{model.id}  ({model.source}, {_human(model.size_bytes)})\n  {model.path}")
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


def _plan(meta: Any, args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    from backend.hardware.planner import PlanRequest, plan_offload
    from backend.hardware.probe import parse_size, probe_hardware

    hardware = probe_hardware()
    if args.gpu_memory:
        hardware = hardware.with_gpu_override(parse_size(args.gpu_memory))
    plan = plan_offload(meta, hardware, PlanRequest(n_ctx=args.ctx, n_parallel=args.parallel))
    data = asdict(plan) if is_dataclass(plan) else dict(vars(plan))
    data.pop("inputs", None)  # the metadata and hardware, shown elsewhere
    for side in ("gpu", "cpu"):
        if isinstance(data.get(side), dict) and not args.json:
            data[side] = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in data[side].items())
    return data


def add_hardware_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hw = sub.add_parser("hardware", help="what Hearth sees: CPU, RAM, GPUs, offload support")
    hw.add_argument("--json", action="store_true")


def run_hardware_command(args: argparse.Namespace) -> int:
    from backend.hardware.probe import probe_hardware

    hardware = probe_hardware()
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
