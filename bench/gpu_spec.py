"""Issue #19 on an NVIDIA GPU: speculative decoding with a draft model, and a long first turn.

    python3 bench/gpu_spec.py --out $OUT            (on the GPU machine, with .gpu carried)

1. Installs the ``.gpu`` wheels and builds llama.cpp with CUDA once (``gpu_batching.build``:
   shared libraries for Hearth and ``llama-server`` from the same build), writing meanwhile
   a Llama-3-8B-shaped Q4_0 target and a Llama-3.2-1B-shaped Q4_0 draft (synthgguf, SmolLM2's
   vocabulary with its end-of-generation tokens out of greedy reach).
2. Random weights agree on nothing, so the two ends of the acceptance range are made:
   * zero acceptance: the draft's ``output_norm`` is zeroed, so its logits are all 0 and its
     greedy guess is always token 0, which the target (random weights) hardly ever picks;
   * full acceptance: the target's ``output_norm`` is zeroed too (same size and cost, every
     logit 0, so it always picks token 0), and the same draft is always right.
   Sides, each a greedy streamed reply of --tokens tokens to three prompts: Hearth without
   speculation, Hearth with the draft pinned to --n-max tokens a step (``speculative.n_min``
   = ``n_max``: no backing off), Hearth Auto (its evidence decides), llama-server without, and
   llama-server ``--spec-type draft-simple`` with ``--spec-draft-n-max`` = ``--spec-draft-n-min``
   = --n-max. All layers of both models on the GPU, flash attention as each decides (auto).
3. From the two ends, each side's time per draft-and-check round (1 token per round at zero
   acceptance, n_max + 1 at full) and the acceptance rate (per drafted token, geometric) at
   which speculation breaks even with not speculating. ``--only self``: the issue's own
   construction of full acceptance, the draft being the target's own weights (both servers
   accept every drafted token; each draft step costs a target step).
4. A long first turn (~3,100 tokens, then a follow-up) on the 8B target: prompt tokens/s,
   Hearth against llama-server (``prefill_bench.measure``), both fully offloaded.

Writes ``gpu_spec.json`` to --out after every step. Locally (CPU, tiny shapes) to check it:
    python bench/gpu_spec.py --local --out /tmp/gpu-spec
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_batching  # noqa: E402
from bench.gpu_batching import LOCAL_LLAMA_SERVER, SHAPE_8B, SHAPE_TINY, T0, WORK, log  # noqa: E402

SHAPE_1B = ["--layers", "16", "--embd", "2048", "--heads", "32", "--kv-heads", "8",
            "--ff", "8192", "--ctx", "32768", "--type", "q4_0"]
SHAPE_TINY_DRAFT = ["--layers", "1", "--embd", "128", "--heads", "2", "--kv-heads", "1",
                    "--ff", "256", "--ctx", "4096", "--type", "q4_0"]
PROMPTS = ("Rename the variable total to grand_total in this code and return it.",
           "Summarise the history of the harbour town in two sentences.",
           "Write a story about a lighthouse keeper.")


def zero_output_norm(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose final norm weights are 0: every logit 0, greedy = token 0."""
    if not dst.exists():
        import gguf
        import numpy as np

        tmp = dst.with_suffix(".part")
        shutil.copyfile(src, tmp)
        reader = gguf.GGUFReader(tmp, "r+")
        tensor = next(t for t in reader.tensors if t.name == "output_norm.weight")
        tensor.data[...] = np.zeros_like(tensor.data)
        del reader  # flushes the memory map
        tmp.rename(dst)
    return dst


def expected_tokens(alpha: float, k: int) -> float:
    return float(k + 1) if alpha >= 1.0 else (1 - alpha ** (k + 1)) / (1 - alpha)


def break_even(rate_off: float, rate_zero: float, rate_full: float, k: int) -> dict[str, Any]:
    """The acceptance rate at which drafting ``k`` tokens a round matches not drafting.

    A round yields 1 token at zero acceptance and k + 1 at full acceptance, so its time is
    1/rate_zero at one end and (k+1)/rate_full at the other; between them it is taken as
    the mean (a round does the same work either way). Tokens per round at acceptance alpha
    (each drafted token right with chance alpha given the ones before) is 1 + alpha + ... +
    alpha**k."""
    if min(rate_off, rate_zero, rate_full) <= 0:
        return {}
    round_zero, round_full = 1 / rate_zero, (k + 1) / rate_full
    round_s = (round_zero + round_full) / 2
    need = rate_off * round_s  # tokens a round must yield to match not speculating
    lo, hi = 0.0, 1.0
    if expected_tokens(1.0, k) < need:
        alpha = None
    else:
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected_tokens(mid, k) < need else (lo, mid)
        alpha = round(hi, 3)
    return {"round_ms_at_zero": round(round_zero * 1000, 2),
            "round_ms_at_full": round(round_full * 1000, 2),
            "overhead_at_zero_acceptance": round(rate_zero / rate_off, 3),
            "gain_at_full_acceptance": round(rate_full / rate_off, 3),
            "break_even_acceptance": alpha}


def reply_rate(url: str, model: str, extra: dict[str, Any], tokens: int) -> dict[str, Any]:
    from bench.peers import chat

    replies = [chat(url, model, [{"role": "user", "content": p}], tokens, extra)
               for p in PROMPTS]
    span = sum(r.total_s - r.ttft_s for r in replies)
    made = sum(r.tokens - 1 for r in replies)
    return {"tok_s": round(made / span, 1) if span else 0.0,
            "tokens": sum(r.tokens for r in replies),
            "drafted": sum(r.drafted or 0 for r in replies),
            "accepted": sum(r.accepted or 0 for r in replies)}


@contextlib.contextmanager
def sides(target: Path, draft: Path, args: argparse.Namespace, binary: Path
          ) -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    from bench.peers import hearth, llama_server, served_name

    gpu = {"gpu_layers": 999} if not args.local else {}
    ngl = ["-ngl", "999", "-ngld", "999"] if not args.local else []
    k = str(args.n_max)
    pinned = {"speculative.n_max": args.n_max, "speculative.n_min": args.n_max}
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(hearth(target, threads=args.threads, ctx=args.ctx,
                                          engine={**gpu, "draft_model": str(draft)}))
        name = {"model": served_name(ours.url, str(target))}
        plain = stack.enter_context(llama_server(
            target, threads=args.threads, ctx=args.ctx, binary=binary,
            extra=["--ignore-eos", *ngl[:2]]))
        spec = stack.enter_context(llama_server(
            target, threads=args.threads, ctx=args.ctx, binary=binary,
            extra=["--ignore-eos", *ngl, "--spec-type", "draft-simple", "-md", str(draft),
                   "--spec-draft-n-max", k, "--spec-draft-n-min", k]))
        out = [("hearth off", ours.url, {"speculative.type": "off", **name}),
               ("hearth draft pinned", ours.url, {"speculative.type": "draft", **pinned,
                                                  **name}),
               ("hearth auto", ours.url, name),
               # The draft model alone, its length and backing off left to the evidence:
               # Auto also drafts from the reply's own n-grams, and random weights loop, so
               # Auto's figure at "zero acceptance" is not the draft model's back-off cost.
               ("hearth draft", ours.url, {"speculative.type": "draft", **name}),
               ("llama-server", plain.url, {}),
               ("llama-server draft-simple", spec.url, {})]
        for _, url, extra in out:  # warm-up
            reply_rate(url, str(target), extra, 8)
        yield out


def measure_pair(label: str, target: Path, draft: Path, args: argparse.Namespace,
                 binary: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with sides(target, draft, args, binary) as all_sides:
        for _ in range(args.rounds):
            for name, url, extra in all_sides:
                r = reply_rate(url, str(target), extra, args.tokens)
                result.setdefault(name, []).append(r)
                log(f"{label}: {name:<26} {r['tok_s']:>8.1f} tok/s, {r['tokens']} tokens, "
                    f"{r['accepted']}/{r['drafted']} drafted accepted")
    return {name: max(rs, key=lambda r: r["tok_s"]) | {"rounds": rs}
            for name, rs in result.items()}


def prefill(target: Path, args: argparse.Namespace, binary: Path) -> dict[str, Any]:
    from bench.peers import hearth, llama_server, median, served_name
    from bench.prefill_bench import document, measure

    gpu = {"gpu_layers": 999} if not args.local else {}
    ngl = ["-ngl", "999"] if not args.local else []
    doc = document(args.prompt_tokens, 1)
    rows: dict[str, list[dict[str, Any]]] = {"hearth": [], "llama-server": []}
    with hearth(target, threads=args.threads, ctx=args.ctx, engine=gpu) as ours, \
            llama_server(target, threads=args.threads, ctx=args.ctx, binary=binary,
                         extra=ngl) as theirs:
        name = served_name(ours.url, str(target))
        for url in (ours.url, theirs.url):
            measure(url, name, doc, 0, 4)  # warm-up
        for i in range(1, args.rounds + 2):
            for side, url in (("hearth", ours.url), ("llama-server", theirs.url)):
                row = measure(url, name, doc, i, 4)
                rows[side].append(row)
                log(f"prefill {side:<13} {row['prompt_tokens']} tokens "
                    f"{row['prompt_tok_s']:>9.1f} tok/s, first token {row['ttft_ms']} ms, "
                    f"follow-up {row['turn2_ttft_ms']} ms")
    med = {side: {k: median([r[k] for r in rs]) for k in ("prompt_tok_s", "ttft_ms",
                                                          "turn2_ttft_ms")}
           for side, rs in rows.items()}
    ratio = med["hearth"]["prompt_tok_s"] / med["llama-server"]["prompt_tok_s"]
    return {"rounds": rows, "median": med, "ratio": round(ratio, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu-spec"))
    parser.add_argument("--local", action="store_true", help="CPU smoke test, tiny shapes")
    parser.add_argument("--arch", default="90", help="CMAKE_CUDA_ARCHITECTURES")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=128, help="per reply")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n-max", type=int, default=8, help="drafted tokens per round, both "
                        "sides, when pinned")
    parser.add_argument("--prompt-tokens", type=int, default=3100)
    parser.add_argument("--only", nargs="*", default=None,
                        choices=("zero", "full", "self", "prefill"))
    parser.add_argument("--deadline-s", type=float, default=560)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    wanted = args.only or ["prefill", "zero", "full"]
    if args.local:
        gpu_batching.KIT = Path("/work/shared/gpu") if not gpu_batching.KIT.exists() \
            else gpu_batching.KIT
        shapes = (SHAPE_TINY, SHAPE_TINY_DRAFT)
        binary = LOCAL_LLAMA_SERVER
        args.threads = min(args.threads, 2)
        args.prompt_tokens = min(args.prompt_tokens, 600)
    else:
        gpu_batching.install_wheels()
        shapes = (SHAPE_8B, SHAPE_1B)
    tag = "tiny" if args.local else "8b"

    def write_models() -> tuple[Path, Path, Path, Path]:
        target = gpu_batching.make_model(WORK / f"spec-target-{tag}.gguf", shapes[0], False)
        draft = gpu_batching.make_model(WORK / f"spec-draft-{tag}.gguf", shapes[1], False)
        return (target, zero_output_norm(target, WORK / f"spec-target-{tag}-zero.gguf"),
                draft, zero_output_norm(draft, WORK / f"spec-draft-{tag}-zero.gguf"))

    writer = concurrent.futures.ThreadPoolExecutor(1).submit(write_models)
    if not args.local:
        binary = gpu_batching.build(args.arch, with_server=True)
        importlib.invalidate_caches()  # llama_cpp appeared in /tmp/site after start-up
    target, target_zero, _draft, draft_zero = writer.result()
    log("models: " + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB"
                               for p in (target, draft_zero)))
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()},
                              "errors": []}
    out_json = args.out / "gpu_spec.json"

    def save() -> None:
        report["elapsed_s"] = round(time.monotonic() - T0, 1)
        out_json.write_text(json.dumps(report, indent=1))

    steps = {"prefill": lambda: prefill(target, args, binary),
             "zero": lambda: measure_pair("zero acceptance", target, draft_zero, args, binary),
             "full": lambda: measure_pair("full acceptance", target_zero, draft_zero, args,
                                          binary),
             # The issue's own construction: the draft is the target's own weights, so
             # every drafted token is right for both servers (no ties between equal logits),
             # at the price of an 8B-sized draft step.
             "self": lambda: measure_pair("draft = target", target, target, args, binary)}
    for step in wanted:
        if time.monotonic() - T0 > args.deadline_s:
            report.setdefault("not_run", []).append(step)
            log(f"deadline reached: {step} not run")
            continue
        try:
            report[step] = steps[step]()
        except Exception as exc:
            report["errors"].append(f"{step}: {exc}"[-3000:])
            log(f"{step} failed: {exc}")
        save()
    if "zero" in report and "full" in report:
        report["break_even"] = {}
        for ours, off in (("hearth draft pinned", "hearth off"),
                          ("llama-server draft-simple", "llama-server")):
            zero, full = report["zero"].get(ours), report["full"].get(ours)
            base = report["zero"].get(off)
            if zero and full and base:
                report["break_even"][ours] = break_even(base["tok_s"], zero["tok_s"],
                                                        full["tok_s"], args.n_max)
    save()
    print_summary(report)
    print(f"wrote {out_json} in {time.monotonic() - T0:.0f} s")
    return 0


def print_summary(report: dict[str, Any]) -> None:
    if "prefill" in report:
        p = report["prefill"]["median"]
        print(f"\nlong first turn: hearth {p['hearth']['prompt_tok_s']:.0f} prompt tok/s "
              f"({p['hearth']['ttft_ms']:.0f} ms), llama-server "
              f"{p['llama-server']['prompt_tok_s']:.0f} ({p['llama-server']['ttft_ms']:.0f} "
              f"ms): x{report['prefill']['ratio']}")
    for point in ("zero", "full", "self"):
        if point not in report:
            continue
        print(f"\n{point} acceptance (decode tok/s, best of rounds; drafted -> accepted):")
        rows = report[point]
        for name, r in rows.items():
            base = rows["hearth off" if name.startswith("hearth") else "llama-server"]["tok_s"]
            print(f"  {name:<26} {r['tok_s']:>8.1f}  x{r['tok_s'] / base:.3f} of its own "
                  f"without  {r['drafted']:>5} -> {r['accepted']:>5}")
        if "hearth draft pinned" in rows and "llama-server draft-simple" in rows:
            ratio = rows["hearth draft pinned"]["tok_s"] / \
                rows["llama-server draft-simple"]["tok_s"]
            print(f"  hearth pinned / llama-server draft-simple: x{ratio:.3f}")
    for name, b in report.get("break_even", {}).items():
        print(f"\n{name}: overhead at zero acceptance x{b.get('overhead_at_zero_acceptance')}"
              f", gain at full x{b.get('gain_at_full_acceptance')}, breaks even at "
              f"{b.get('break_even_acceptance')} acceptance per drafted token")
    if report.get("errors"):
        print("errors:\n" + "\n".join(report["errors"]))


if __name__ == "__main__":
    raise SystemExit(main())
