"""The offload planner against a real NVIDIA GPU (run on the lent GPU machine).

    bash .gpu/build.sh python3 bench/gpu_planner.py [--out DIR]

1. Accuracy: synthetic Llama-shaped models like 1B, 8B and 30B (``.gpu/synthgguf.py``) at 4k
   and 32k context, fully offloaded by the planner's own plan: predicted VRAM vs. what
   nvidia-smi says the load took.
2. Partial offload under pressure: another process holds VRAM so that only a few GiB stay
   free; the planner's automatic plan must load without running out of memory, and offload
   at least 90% of the layers that actually fit (found by trying loads, binary search).

Each load runs in a child process so its VRAM is given back before the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # name: synthgguf arguments (Llama-3.2-1B, Llama-3.1-8B, Qwen2.5-32B-like)
    "1b": ["--layers", "16", "--embd", "2048", "--heads", "32", "--kv-heads", "8",
           "--ff", "8192", "--ctx", "32768", "--type", "q8_0"],
    "8b": ["--layers", "32", "--embd", "4096", "--heads", "32", "--kv-heads", "8",
           "--ff", "14336", "--ctx", "32768", "--type", "q4_0"],
    "30b": ["--layers", "64", "--embd", "5120", "--heads", "40", "--kv-heads", "8",
            "--ff", "27648", "--ctx", "32768", "--type", "q4_0"],
}
GiB = 1 << 30


def vram_used_mib() -> int:
    out = subprocess.check_output(["nvidia-smi", "--query-gpu=memory.used",
                                   "--format=csv,noheader,nounits"], text=True)
    return int(out.split()[0])


def vram_free_mib() -> int:
    """What can still be allocated: excludes the driver's reserved memory, as NVML's free."""
    out = subprocess.check_output(["nvidia-smi", "--query-gpu=memory.free",
                                   "--format=csv,noheader,nounits"], text=True)
    return int(out.split()[0])


def child(model: str, n_ctx: int, n_gpu_layers: int | None, gpu_memory: int | None,
          margin_mib: int = 1024) -> None:
    """Plan, load, decode a few tokens, report predicted and measured VRAM as JSON."""
    import asyncio

    from backend.engine.engine import Engine
    from backend.engine.types import GenerationRequest, SamplingParams
    from backend.hardware.planner import PlanRequest, plan_offload
    from backend.hardware.probe import probe_hardware
    from backend.library.gguf_meta import read_gguf_metadata
    from backend.library.local import LocalModel

    meta = read_gguf_metadata(Path(model))
    hardware = probe_hardware()
    if gpu_memory:
        hardware = hardware.with_gpu_override(gpu_memory)
    plan = plan_offload(meta, hardware, PlanRequest(n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                                                    margin_bytes=margin_mib << 20))
    load = plan.to_load_plan()
    result = {"verdict": str(plan.verdict), "n_gpu_layers": plan.n_gpu_layers,
              "n_layers_total": plan.n_layers_total, "n_ctx": plan.n_ctx,
              "predicted_gpu_mib": plan.gpu.total / 2**20, "reason": plan.reason,
              "free_gpu_mib": hardware.gpus[0].free_bytes / 2**20 if hardware.gpus else 0}

    async def run() -> None:
        engine = Engine()
        t0 = time.perf_counter()
        await engine.load(LocalModel("m", Path(model), "file"), load)
        result["load_s"] = time.perf_counter() - t0
        n = 0
        async for _ in engine.generate(GenerationRequest(
                prompt="Hello " * 8, max_tokens=16, sampling=SamplingParams(temperature=0))):
            n += 1
        result["measured_used_mib"] = vram_used_mib()
        result["free_after_mib"] = vram_free_mib()
        engine.close()

    try:
        asyncio.run(run())
        result["ok"] = True
    except Exception as exc:  # an OOM is a result here, not a crash
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    print("RESULT " + json.dumps(result), flush=True)


def run_child(model: Path, n_ctx: int, layers: int | None = None,
              gpu_memory: int | None = None, margin_mib: int = 1024) -> dict:
    args = [sys.executable, __file__, "--child", str(model), str(n_ctx),
            str(layers if layers is not None else -1), str(gpu_memory or 0), str(margin_mib)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"ok": False, "error": (proc.stderr or proc.stdout)[-800:]}


def make_model(name: str, folder: Path) -> Path:
    path = folder / f"synth-{name}.gguf"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / ".gpu" / "synthgguf.py"), "make", str(path),
                        "--vocab", str(ROOT / ".gpu" / "smollm2-vocab.json.gz"),
                        *SHAPES[name]], check=True, capture_output=True)
    return path


def accuracy(folder: Path) -> list[dict]:
    rows = []
    for name in SHAPES:
        model = make_model(name, folder)
        for n_ctx in (4096, 32768):
            base = vram_used_mib()
            r = run_child(model, n_ctx)
            r.update(model=name, ctx=n_ctx, size_gib=model.stat().st_size / GiB,
                     baseline_mib=base)
            if r.get("ok"):
                r["measured_mib"] = r["measured_used_mib"] - base
                r["error_pct"] = 100 * (r["predicted_gpu_mib"] / r["measured_mib"] - 1)
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


def pressure(folder: Path, name: str, free_gib: float, n_ctx: int) -> dict:
    """Hold VRAM in another process so only ``free_gib`` stays free, then plan and load."""
    model = make_model(name, folder)
    total = int(subprocess.check_output(["nvidia-smi", "--query-gpu=memory.total",
                                         "--format=csv,noheader,nounits"], text=True).split()[0])
    # The blocker's own CUDA context takes ~500 MiB on top of what it allocates.
    hold_mib = max(1, int(total - vram_used_mib() - free_gib * 1024 - 520))
    blocker = subprocess.Popen([sys.executable, "-c", (
        "import torch, time, sys\n"
        f"x = torch.empty({hold_mib} * 2**20, dtype=torch.uint8, device='cuda')\n"
        "print('held', flush=True)\n"
        "time.sleep(3600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert blocker.stdout is not None and blocker.stdout.readline().strip() == "held"
        time.sleep(1)
        free_before = vram_free_mib()
        auto = run_child(model, n_ctx)  # the planner sees the real free VRAM through NVML
        # The same with the margin setting at 0: the plan against everything that fits.
        auto_no_margin = run_child(model, n_ctx, margin_mib=0)
        margin_mib = 1024  # the planner's default margin, kept free for the desktop
        fits, fits_with_margin = 0, 0
        lo, hi = 0, int(auto.get("n_layers_total") or 33)
        while lo < hi:  # the most layers that load and decode at all
            mid = (lo + hi + 1) // 2
            r = run_child(model, n_ctx, layers=mid)
            if r.get("ok"):
                lo = mid
                if r["free_after_mib"] >= margin_mib:
                    fits_with_margin = max(fits_with_margin, mid)
            else:
                hi = mid - 1
        fits = lo
        lo, hi = fits_with_margin, fits
        while lo < hi:  # the most that load while leaving the margin free
            mid = (lo + hi + 1) // 2
            r = run_child(model, n_ctx, layers=mid)
            if r.get("ok") and r["free_after_mib"] >= margin_mib:
                lo = mid
            else:
                hi = mid - 1
        fits_with_margin = lo
        result = {"model": name, "ctx": n_ctx, "free_mib": free_before, "auto": auto,
                  "auto_no_margin": auto_no_margin,
                  "auto_no_margin_over_max": (auto_no_margin.get("n_gpu_layers", 0) / fits
                                              if fits else None),
                  "max_layers_that_fit": fits, "max_layers_leaving_margin": fits_with_margin,
                  "auto_over_max": auto.get("n_gpu_layers", 0) / fits if fits else None,
                  "auto_over_max_with_margin": (auto.get("n_gpu_layers", 0) / fits_with_margin
                                                if fits_with_margin else None)}
    finally:
        blocker.kill()
        blocker.wait()
        time.sleep(2)  # let the driver take the blocker's memory back
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model, n_ctx, layers, gpu_memory, margin = sys.argv
        child(model, int(n_ctx), None if int(layers) < 0 else int(layers),
              int(gpu_memory) or None, int(margin))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    parser.add_argument("--models", default="/tmp/synth")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    folder = Path(args.models)
    folder.mkdir(parents=True, exist_ok=True)
    report = {"accuracy": [] if args.skip_accuracy else accuracy(folder),
              "pressure": [pressure(folder, "8b", 3.0, 4096),
                           pressure(folder, "30b", 12.0, 4096)]}
    Path(args.out, "gpu_planner.json").write_text(json.dumps(report, indent=1))
    print("\nmodel ctx   predicted  measured  error")
    for r in report["accuracy"]:
        if r.get("ok"):
            print(f"{r['model']:<5} {r['ctx']:>5} {r['predicted_gpu_mib']:>9.0f} "
                  f"{r['measured_mib']:>9.0f} {r['error_pct']:>+6.1f}%  {r['verdict']}")
        else:
            print(f"{r['model']:<5} {r['ctx']:>5} failed: {r.get('error')}")
    for p in report["pressure"]:
        a = p["auto"]
        print(f"pressure {p['model']} {p['free_mib']} MiB free: auto {a.get('n_gpu_layers')}/"
              f"{a.get('n_layers_total')} ok={a.get('ok')}; most that load "
              f"{p['max_layers_that_fit']} (ratio {p['auto_over_max']}); most that load "
              f"leaving 1 GiB free {p['max_layers_leaving_margin']} "
              f"(ratio {p['auto_over_max_with_margin']}); with the margin set to 0 the plan "
              f"is {p['auto_no_margin'].get('n_gpu_layers')} ok={p['auto_no_margin'].get('ok')}"
              f" (ratio {p['auto_no_margin_over_max']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
