"""Speculative decoding: Hearth against Hearth without it and against llama-server, one run.

Workloads (``spec_prompts.py``): "edit" (rename a variable in a ~20-line function and return
it), "quote" (quote a paragraph of a given document, then summarise it), "chat" (free
writing). One greedy streamed reply of --max-tokens per prompt and side, sides interleaved
prompt by prompt, --rounds times:

  hearth off          `hearth serve`, the request asks ``"speculative.type": "off"``
  hearth auto         the same server, nothing asked: the default (Auto)
  hearth draft        with --draft: the same server (loaded with the draft model), "draft"
  llama-server        no speculation
  llama-server ngram-mod    ``--spec-type ngram-mod`` (its defaults)
  llama-server draft-simple with --draft: ``--spec-type draft-simple -md DRAFT``

Printed per workload: decode tokens/s (all replies' tokens after their first over the time
those took), drafted / accepted tokens, and the ratios the issue asks for. ``--agreement``
instead sends 20 prompts (--max-tokens 128) and counts replies that are the same text with
and without speculation, for Hearth and for llama-server.

    python bench/spec_bench.py [--model PATH] [--threads 2] [--rounds 2] [--max-tokens 256]
        [--gpu-layers N] [--draft PATH] [--n-max K] [--agreement] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import (
    LLAMA_SERVER,
    Reply,
    chat,
    hearth,
    llama_server,
    median,
    served_name,
    starter_path,
)
from bench.spec_prompts import WORKLOADS, agreement_prompts

Side = tuple[str, str, dict[str, Any]]  # name, url, extra request fields (and "model")


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[list[Side]]:
    """Every side's server, started together (each idles while the others work)."""
    model = args.model
    engine: dict[str, Any] = json.loads(args.hearth_engine)
    if args.gpu_layers:
        engine["gpu_layers"] = args.gpu_layers
    if args.draft:
        engine["draft_model"] = str(args.draft)
    common = ["-fa", args.flash_attn] + (["-ngl", str(args.gpu_layers)] if args.gpu_layers
                                         else [])
    pinned = ({"speculative.n_max": args.n_max, "speculative.n_min": args.n_max}
              if args.pin else {})
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(hearth(model, threads=args.threads, ctx=args.ctx,
                                          engine=engine))
        name = {"model": served_name(ours.url, str(model))}
        sides: list[Side] = [("hearth off", ours.url, {"speculative.type": "off", **name})]
        if not args.only_draft:
            sides.append(("hearth auto", ours.url, name))
        if args.draft:
            sides.append(("hearth draft", ours.url, {"speculative.type": "draft", **pinned,
                                                     **name}))
        if args.llama_server.exists():
            plain = stack.enter_context(llama_server(
                model, threads=args.threads, ctx=args.ctx, extra=common,
                binary=args.llama_server))
            sides.append(("llama-server", plain.url, {}))
            if not args.only_draft:
                mod = stack.enter_context(llama_server(
                    model, threads=args.threads, ctx=args.ctx, binary=args.llama_server,
                    extra=[*common, "--spec-type", "ngram-mod"]))
                sides.append(("llama-server ngram-mod", mod.url, {}))
            if args.draft:
                draft = ["--spec-type", "draft-simple", "-md", str(args.draft),
                         "--spec-draft-n-max", str(args.n_max)]
                if args.pin:
                    draft += ["--spec-draft-n-min", str(args.n_max)]
                if args.gpu_layers:
                    draft += ["-ngld", "999"]
                ds = stack.enter_context(llama_server(
                    model, threads=args.threads, ctx=args.ctx, binary=args.llama_server,
                    extra=[*common, *draft]))
                sides.append(("llama-server draft-simple", ds.url, {}))
        else:
            print(f"llama-server not found at {args.llama_server}: Hearth only")
        for _, url, extra in sides:  # warm-up: weights paged in, first-call costs paid
            chat(url, str(model), [{"role": "user", "content": "Hello"}], 4, extra)
        yield sides


def run_workloads(sides: list[Side], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, dict[str, list[Reply]]] = {w: {s[0]: [] for s in sides}
                                                  for w in args.workloads}
    for r in range(args.rounds):
        for workload in args.workloads:
            for i, prompt in enumerate(WORKLOADS[workload]):
                for name, url, extra in sides:
                    reply = chat(url, str(args.model), [{"role": "user", "content": prompt}],
                                 args.max_tokens, extra)
                    results[workload][name].append(reply)
                    drafts = (f", {reply.accepted}/{reply.drafted} drafted accepted"
                              if reply.drafted else "")
                    print(f"round {r + 1} {workload} {i + 1} {name:<26} {reply.tokens:>4} "
                          f"tokens {reply.decode_tok_s:>7.1f} tok/s{drafts}", flush=True)
    return summarise(results, sides)


def summarise(results: dict[str, dict[str, list[Reply]]], sides: list[Side]
              ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload, by_side in results.items():
        rows = {}
        for name, replies in by_side.items():
            drafted = sum(r.drafted or 0 for r in replies)
            accepted = sum(r.accepted or 0 for r in replies)
            # All the replies' tokens after their first over the time those took: long
            # replies weigh more than short ones, as they do for whoever waits for them.
            span = sum(r.total_s - r.ttft_s for r in replies if r.tokens > 1)
            rate = sum(r.tokens - 1 for r in replies if r.tokens > 1) / span if span else 0.0
            rows[name] = {"decode_tok_s": round(rate, 1),
                          "median_tok_s": round(median([r.decode_tok_s for r in replies]), 1),
                          "tokens": sum(r.tokens for r in replies),
                          "drafted": drafted, "accepted": accepted}
        base = rows.get("hearth off", {}).get("decode_tok_s") or float("nan")
        for row in rows.values():
            row["x_hearth_off"] = round(row["decode_tok_s"] / base, 3)
        for peer in ("llama-server", "llama-server ngram-mod", "llama-server draft-simple"):
            if peer in rows and rows[peer]["decode_tok_s"]:
                for row in rows.values():
                    row[f"x_{peer}"] = round(row["decode_tok_s"] / rows[peer]["decode_tok_s"],
                                             3)
        out[workload] = rows
    return out


def print_table(summary: dict[str, Any]) -> None:
    print("\ndecode tok/s (all replies), drafted -> accepted, ratio to hearth off / llama-server "
          "ngram-mod")
    for workload, rows in summary.items():
        print(f"{workload}:")
        for name, row in rows.items():
            accept = (f"{row['drafted']:>5} -> {row['accepted']:>5}" if row["drafted"]
                      else " " * 14)
            vs_mod = row.get("x_llama-server ngram-mod")
            vs_ds = row.get("x_llama-server draft-simple")
            print(f"  {name:<26} {row['decode_tok_s']:>7.1f} tok/s  {accept}  "
                  f"x{row['x_hearth_off']:.3f} of hearth off"
                  + (f", x{vs_mod:.3f} of ngram-mod" if vs_mod else "")
                  + (f", x{vs_ds:.3f} of draft-simple" if vs_ds else ""))


def run_agreement(sides: list[Side], args: argparse.Namespace) -> dict[str, Any]:
    """Same text with and without speculation, over 20 prompts, each server with itself."""
    texts: dict[str, list[str]] = {name: [] for name, _, _ in sides}
    for i, prompt in enumerate(agreement_prompts()):
        for name, url, extra in sides:
            texts[name].append(chat(url, str(args.model), [{"role": "user", "content": prompt}],
                                    args.max_tokens, extra).text)
        print(f"prompt {i + 1:>2}: " + ", ".join(
            f"{name} {'same' if texts[name][-1] == texts[base][-1] else 'differs'}"
            for name, base in pairs(texts)), flush=True)
    out = {f"{name} vs {base}": sum(a == b for a, b in zip(texts[name], texts[base],
                                                            strict=True))
           for name, base in pairs(texts)}
    print("\nsame text with and without speculation, of 20 prompts:")
    for key, same in out.items():
        print(f"  {key}: {same}/20")
    return out


def pairs(texts: dict[str, list[str]]) -> list[tuple[str, str]]:
    found = []
    for name in texts:
        if name.startswith("hearth") and name != "hearth off":
            found.append((name, "hearth off"))
        elif name.startswith("llama-server ") and "llama-server" in texts:
            found.append((name, "llama-server"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2)")
    parser.add_argument("--draft", type=Path, default=None, help="a draft model GGUF")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="per reply (default 256; 128 with --agreement)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS))
    parser.add_argument("--n-max", type=int, default=8, help="draft model tokens per step")
    parser.add_argument("--pin", action="store_true", help="draft exactly --n-max tokens "
                        "every step on both sides (no backing off: measures the overhead)")
    parser.add_argument("--only-draft", action="store_true",
                        help="sides: hearth off / draft, llama-server / draft-simple")
    parser.add_argument("--flash-attn", choices=("auto", "on", "off"), default="off",
                        help="llama-server's -fa (default off: Hearth's planner loads "
                        "SmolLM2 on a CPU without it)")
    parser.add_argument("--hearth-engine", default="{}", help="more Hearth engine settings")
    parser.add_argument("--agreement", action="store_true")
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.model = args.model or starter_path()
    args.max_tokens = args.max_tokens or (128 if args.agreement else 256)
    started = time.monotonic()
    with servers(args) as sides:
        if args.agreement:
            report: dict[str, Any] = {"agreement": run_agreement(sides, args)}
        else:
            report = {"workloads": run_workloads(sides, args)}
            print_table(report["workloads"])
    print(f"[{time.monotonic() - started:.0f} s]")
    if args.json:
        report["settings"] = {k: str(v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
