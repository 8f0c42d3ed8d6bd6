"""A long first turn: prompt tokens/s of Hearth against llama-server, in one run.

Documents and images make prompts long; the time to the first token of such a turn is
prompt processing. Both servers get the same GGUF, threads, one slot and context; each round
sends a ~3,100-token first turn (a document and a question) to Hearth and then to
llama-server, every time with a different first line so that neither finds any of it cached,
then a short follow-up turn (where Hearth's prompt cache answers). Printed: prompt tokens/s
(prompt tokens / time to first text, on the client) and time to the first token, both sides,
median of the rounds, and the ratio.

    python bench/prefill_bench.py [--model PATH] [--threads 2] [--gpu-layers 0]
        [--prompt-tokens 3100] [--rounds 3] [--flash-attn auto|on|off]
        [--hearth-flash-attn auto|on|off] [--llama-server PATH] [--json out.json]
    python bench/prefill_bench.py --kernels [--threads 2] [--rounds 2]

``--kernels``: no servers, llama.cpp's own context (Hearth's ``NativeContext``) with flash
attention off and on, rounds interleaved: the long prompt's tokens/s, then, at its depth, a
25-token follow-up chunk and single-token decode steps. It separates what flash attention
does from anything a server does (prompt cache, chunking): on a CPU the follow-up and the
decode at depth are where llama.cpp's flash-attention kernel (one cached position at a time,
for each query row) loses what it wins on the long prompt.

Flash attention: llama-server decides by itself (``auto``); Hearth's default is its planner's
choice (``--hearth-flash-attn planner``), which the README's decode figures use.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import (
    LLAMA_SERVER,
    chat,
    hearth,
    llama_server,
    median,
    served_name,
    starter_path,
)

WORDS = ("the", "river", "keeper", "lamp", "harbour", "winter", "ledger", "copper", "signal",
         "north", "market", "bridge", "orchard", "letter", "engine", "valley", "morning",
         "quiet", "measure", "stone", "window", "garden", "station", "paper", "thread",
         "silver", "storm", "field", "candle", "journey", "evening", "promise", "clock",
         "mountain", "village", "record", "tower", "voice", "shadow", "meadow", "anchor",
         "lantern", "harvest", "compass")


def document(n_tokens: int, seed: int) -> str:
    """About ``n_tokens`` SmolLM2 tokens of plain prose in numbered paragraphs (~1.1 tokens a
    word), the same for a given seed."""
    rng = random.Random(seed)
    paragraphs = []
    words = 0
    i = 0
    while words * 1.1 < n_tokens:
        i += 1
        sentence = [rng.choice(WORDS) for _ in range(rng.randint(40, 70))]
        paragraphs.append(f"{i}. " + " ".join(sentence).capitalize() + ".")
        words += len(sentence) + 1
    return "\n\n".join(paragraphs)


def first_turn(doc: str, round_no: int) -> list[dict[str, str]]:
    # A different first line each round: nothing of it is in either server's cache.
    return [{"role": "user", "content": f"Report {round_no} (ref {round_no * 7919}).\n\n{doc}"
             "\n\nWhich three words appear most often in the report above?"}]


def measure(url: str, model: str, doc: str, round_no: int, max_tokens: int
            ) -> dict[str, Any]:
    messages = first_turn(doc, round_no)
    one = chat(url, model, messages, max_tokens)
    follow = [*messages, {"role": "assistant", "content": one.text},
              {"role": "user", "content": "And the least often?"}]
    two = chat(url, model, follow, max_tokens)
    return {"prompt_tokens": one.prompt_tokens, "ttft_ms": round(one.ttft_s * 1000, 1),
            "prompt_tok_s": round(one.prompt_tok_s, 1),
            "turn2_ttft_ms": round(two.ttft_s * 1000, 1)}


def kernels(args: argparse.Namespace, model: Path) -> None:
    """Flash attention off / on on a bare context, interleaved (see the module docstring)."""
    from backend.engine.native import ContextConfig, NativeContext, NativeModel

    native = NativeModel(model, n_gpu_layers=args.gpu_layers)
    tokens = native.tokenize(document(args.prompt_tokens, 1), add_bos=True)
    for i in range(args.rounds):
        for flash in (False, True):
            ctx = NativeContext(native, ContextConfig(
                n_ctx=args.ctx, n_batch=2048, n_ubatch=512, n_seq_max=1,
                n_threads=args.threads, n_threads_batch=args.threads, flash_attn=flash))
            started = time.perf_counter()
            for at in range(0, len(tokens), 2048):
                chunk = tokens[at:at + 2048]
                ctx.batch_clear()
                ctx.batch_add_many(chunk, at, 0, at + len(chunk) == len(tokens))
                ctx.decode()
            prompt_s = time.perf_counter() - started
            depth = len(tokens)
            started = time.perf_counter()
            ctx.batch_clear()
            ctx.batch_add_many(tokens[100:125], depth, 0, True)
            ctx.decode()
            follow_s = time.perf_counter() - started
            started = time.perf_counter()
            for j in range(4):
                ctx.batch_clear()
                ctx.batch_add(tokens[200 + j], depth + 25 + j, 0, True)
                ctx.decode()
            decode_s = (time.perf_counter() - started) / 4
            ctx.close()
            print(f"round {i + 1} flash attention {'on ' if flash else 'off'}: {depth} prompt "
                  f"tokens {depth / prompt_s:7.1f} tok/s; at that depth a 25-token chunk "
                  f"{follow_s * 1000:7.1f} ms, a decode step {decode_s * 1000:6.1f} ms",
                  flush=True)
    native.close()


def flash_setting(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}.get(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--prompt-tokens", type=int, default=3100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto",
                        help="llama-server's -fa")
    parser.add_argument("--hearth-flash-attn", choices=("planner", "auto", "on", "off"),
                        default="planner", help="Hearth's engine.flash_attn setting")
    parser.add_argument("--hearth-engine", default="{}",
                        help="more engine settings for Hearth, as JSON")
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--kernels", action="store_true",
                        help="flash attention off/on on a bare llama.cpp context, no servers")
    args = parser.parse_args()
    model = args.model or starter_path()
    if args.kernels:
        kernels(args, model)
        return 0
    doc = document(args.prompt_tokens, 1)
    engine: dict[str, Any] = json.loads(args.hearth_engine)
    if args.gpu_layers:
        engine["gpu_layers"] = args.gpu_layers
    if args.hearth_flash_attn != "planner":
        engine["flash_attn"] = flash_setting(args.hearth_flash_attn)
    extra = ["-fa", args.flash_attn]
    if args.gpu_layers:
        extra += ["-ngl", str(args.gpu_layers)]
    rows: dict[str, list[dict[str, Any]]] = {"hearth": [], "llama-server": []}
    started = time.monotonic()
    with hearth(model, threads=args.threads, ctx=args.ctx, engine=engine) as ours, \
            llama_server(model, threads=args.threads, ctx=args.ctx, extra=extra,
                         binary=args.llama_server) as theirs:
        # Warm-up (pages the weights in, first-call costs) with a short turn each.
        name = served_name(ours.url, str(model))
        for url in (ours.url, theirs.url):
            chat(url, name, [{"role": "user", "content": "Hello"}], 4)
        for i in range(1, args.rounds + 1):
            for side, url in (("hearth", ours.url), ("llama-server", theirs.url)):
                row = measure(url, name, doc, i, args.max_tokens)
                rows[side].append(row)
                print(f"round {i} {side:<13} {row['prompt_tokens']} prompt tokens: "
                      f"{row['prompt_tok_s']:>8.1f} tok/s, first token {row['ttft_ms']:>8.1f} "
                      f"ms; follow-up turn {row['turn2_ttft_ms']:>7.1f} ms", flush=True)
    summary = {side: {key: median([r[key] for r in rs])
                      for key in ("prompt_tok_s", "ttft_ms", "turn2_ttft_ms")}
               for side, rs in rows.items()}
    h, ls = summary["hearth"], summary["llama-server"]
    ratio = h["prompt_tok_s"] / ls["prompt_tok_s"] if ls["prompt_tok_s"] else float("nan")
    print(f"\nlong first turn ({rows['hearth'][0]['prompt_tokens']} tokens, {args.threads} "
          f"threads, gpu layers {args.gpu_layers}), median of {args.rounds}:")
    print(f"  hearth        {h['prompt_tok_s']:>8.1f} prompt tok/s, first token "
          f"{h['ttft_ms']:>8.1f} ms, follow-up {h['turn2_ttft_ms']:>7.1f} ms")
    print(f"  llama-server  {ls['prompt_tok_s']:>8.1f} prompt tok/s, first token "
          f"{ls['ttft_ms']:>8.1f} ms, follow-up {ls['turn2_ttft_ms']:>7.1f} ms")
    print(f"  ratio (prompt tok/s, hearth / llama-server): {ratio:.3f}x  "
          f"[{time.monotonic() - started:.0f} s]")
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in
                                                      vars(args).items()},
                                         "rounds": rows, "median": summary,
                                         "ratio": round(ratio, 3)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
