"""What speculation can gain here at most: a decode step's time by its size, on a bare context.

A step checking k drafted tokens is a step of k + 1 tokens, every one wanting logits. Its time
against a 1-token step bounds what speculation can win on this machine: a draft of k tokens,
all accepted, gives k + 1 tokens for C(k + 1), so at best (k + 1) * C(1) / C(k + 1) times the
speed without. Printed per size: median step time, its ratio to a 1-token step, and that
bound. Sizes are interleaved and repeated so that a busy moment spreads over all of them.

    python bench/step_cost_bench.py [--model PATH] [--threads 2] [--depth 200] [--reps 7]
        [--flash-attn off|on]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engine.native import ContextConfig, NativeContext, NativeModel
from bench.peers import starter_path
from bench.spec_prompts import WORKLOADS

SIZES = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33)


def step_times(model: NativeModel, threads: int, depth: int, reps: int, *,
               flash_attn: bool = False, sizes: tuple[int, ...] = SIZES) -> dict[int, float]:
    """Median seconds of a step of each size (every token wanting logits) after ``depth``
    cached tokens, on a bare context of ``model``."""
    ctx = NativeContext(model, ContextConfig(
        n_ctx=4096, n_batch=2048, n_ubatch=512, n_seq_max=1, n_threads=threads,
        n_threads_batch=threads, flash_attn=flash_attn))
    try:
        text = "\n\n".join(WORKLOADS["edit"]) * 4
        tokens = model.tokenize(text, add_bos=True)[:depth + max(sizes)]
        ctx.batch_clear()
        ctx.batch_add_many(tokens[:depth], 0, 0, True)
        ctx.decode()
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(reps):
            for n in sizes:
                ctx.batch_clear()
                for i in range(n):
                    ctx.batch_add(tokens[depth + i], depth + i, 0, True)
                started = time.perf_counter()
                ctx.decode()
                times[n].append(time.perf_counter() - started)
                ctx.seq_remove(0, depth, -1)
    finally:
        ctx.close()
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=200, help="tokens cached before")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--flash-attn", choices=("off", "on"), default="off")
    args = parser.parse_args()
    model = NativeModel(args.model or starter_path())
    try:
        times = step_times(model, args.threads, args.depth, args.reps,
                           flash_attn=args.flash_attn == "on")
    finally:
        model.close()
    one = times[1]
    print(f"step time by size ({args.threads} threads, depth {args.depth}, flash attention "
          f"{args.flash_attn}, median of {args.reps}):")
    for n in SIZES:
        t = times[n]
        print(f"  {n:>3} tokens {t * 1000:8.2f} ms  x{t / one:5.2f} of one  "
              f"best gain of a {n - 1}-token draft: x{n * one / t:4.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
