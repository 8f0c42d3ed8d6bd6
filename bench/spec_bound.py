"""What n-gram speculation could win here at best: real replies replayed at measured prices.

``spec_bench.py`` measures what Hearth's speculation wins. This says what *any* length policy
could win on the same prompts on this machine, so that a target above it is known to be out
of reach rather than missed. Per workload prompt it takes the model's greedy reply without
speculation (the prompt rendered with the model's own template, up to --max-tokens), times a
decode step by its size on a bare context (``step_cost_bench.step_times``: every token of a
step wants logits, as when drafts are checked), and replays the reply step by step:

  hindsight                Hearth's n-gram drafts (``ngram.NgramIndex``), each step drafting
                           exactly the tokens that will be accepted: the best any policy
                           choosing draft lengths could do with these drafts
  hindsight, 1-token keys  the same with an index keyed on single tokens (a draft wherever
                           any earlier token matches: the most drafts a lookup can offer)
  every draft right        the best-priced draft length, always wholly accepted: the bound
                           the step prices alone set
  Hearth's policy          ``speculation.draft_length`` with its priors, learning from each
                           step and from drafts passed up, as the engine does (it tracks
                           spec_bench's measured ratios to a few percent)

Printed per workload: each replay's tokens/s over decoding without drafts. Step prices leave
out what a step costs outside llama_decode (the same per step with or without a draft, so
leaving it out understates the gains a little).

    python bench/spec_bound.py [--model PATH] [--threads 1] [--max-tokens 128] [--reps 5]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp as C
import numpy as np

from backend.engine import ngram
from backend.engine.chat_template import select_template, strip_leading_bos
from backend.engine.native import ContextConfig, NativeContext, NativeModel
from backend.engine.speculation import AcceptanceBook, draft_length
from backend.engine.types import ChatMessage
from bench.peers import starter_path
from bench.spec_prompts import WORKLOADS
from bench.step_cost_bench import SIZES, step_times

BOUND_SIZES = (*SIZES, 49, 65)
# A policy: (draft offered, tokens of it the reply agrees with, the draft's match length)
# -> tokens to draft.
Policy = Callable[[list[int], int, int], int]


def greedy_reply(model: NativeModel, ctx: NativeContext, prompt: list[int], limit: int
                 ) -> list[int]:
    ctx.seq_remove(0, 0, -1)
    ctx.batch_clear()
    ctx.batch_add_many(prompt, 0, 0, True)
    ctx.decode()
    reply: list[int] = []
    row = ctx.n_in_batch - 1
    n_vocab = model.n_vocab
    while len(reply) < limit:
        address = ctypes.cast(C.llama_get_logits_ith(ctx.ptr, row), ctypes.c_void_p).value
        token = int(np.frombuffer((ctypes.c_float * n_vocab).from_address(address),
                                  np.float32).argmax())
        if model.is_eog(token):
            break
        reply.append(token)
        ctx.batch_clear()
        row = ctx.batch_add(token, len(prompt) + len(reply) - 1, 0, True)
        ctx.decode()
    return reply


def prompts_and_replies(model: NativeModel, threads: int, limit: int
                        ) -> dict[str, list[tuple[list[int], list[int]]]]:
    template = select_template(model.chat_template(), None,
                               bos_token=model.token_text(model.bos_id),
                               eos_token=model.token_text(model.eos_id))
    ctx = NativeContext(model, ContextConfig(
        n_ctx=2048, n_batch=2048, n_ubatch=512, n_seq_max=1, n_threads=threads,
        n_threads_batch=threads, flash_attn=False))
    out: dict[str, list[tuple[list[int], list[int]]]] = {}
    try:
        for workload, texts in WORKLOADS.items():
            for text in texts:
                rendered = template.render([ChatMessage("user", text)])
                if model.add_bos:
                    rendered, _ = strip_leading_bos(rendered, template.bos_token)
                prompt = model.tokenize(rendered, add_bos=model.add_bos)
                out.setdefault(workload, []).append(
                    (prompt, greedy_reply(model, ctx, prompt, limit)))
    finally:
        ctx.close()
    return out


def priced(times: dict[int, float]) -> Callable[[int], float]:
    sizes = sorted(times)

    def step_s(n: int) -> float:
        return float(np.interp(n, sizes, [times[s] for s in sizes],
                               right=times[sizes[-1]] + (n - sizes[-1]) * (
                                   times[sizes[-1]] - times[sizes[-2]])
                               / (sizes[-1] - sizes[-2])))
    return step_s


def replay(prompt: list[int], reply: list[int], policy: Policy, step_s: Callable[[int], float]
           ) -> float:
    """Seconds to produce ``reply`` after its first token (which the prompt's step gives)."""
    index = ngram.NgramIndex(prompt)
    index.append(reply[0])
    done, seconds = 1, 0.0
    while done < len(reply):
        found = index.lookup(64)
        draft = found.tokens if found else []
        agree = 0
        for guess, token in zip(draft, reply[done:], strict=False):
            if guess != token:
                break
            agree += 1
        k = min(policy(draft, agree, found.match if found else 0), len(draft)) if draft else 0
        got = min(min(agree, k) + 1, len(reply) - done)
        seconds += step_s(k + 1)
        index.extend(reply[done:done + got])
        done += got
    return seconds


def hearth_policy(step_s: Callable[[int], float]) -> Callable[[], Policy]:
    """A factory of per-request policies sharing one engine memory (``AcceptanceBook``)."""
    book = AcceptanceBook()

    def start() -> Policy:
        evidence = book.start()

        def policy(draft: list[int], agree: int, match: int) -> int:
            source = f"ngram{ngram.band(match)}"
            k = draft_length(evidence[source].alpha(), len(draft), step_s=step_s, size=1)
            # Checked, or (passed up) scored in the shadow as the engine does: either way
            # the source learns how far the draft was right.
            n = k or min(len(draft), 16)
            accepted = min(agree, n)
            evidence[source].add(accepted, accepted < n)
            book.learn(source, accepted, accepted < n)
            return k
        return policy
    return start


def keyed_on(key: int) -> None:
    ngram.KEY = key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--depth", type=int, default=200)
    args = parser.parse_args()
    model = NativeModel(args.model or starter_path())
    try:
        times = step_times(model, args.threads, args.depth, args.reps, sizes=BOUND_SIZES)
        replies = prompts_and_replies(model, args.threads, args.max_tokens)
    finally:
        model.close()
    step_s = priced(times)
    one = times[1]
    print(f"step prices ({args.threads} threads, depth {args.depth}, median of {args.reps}): "
          + ", ".join(f"{n}: x{times[n] / one:.2f}" for n in BOUND_SIZES))
    best_every = max(range(1, 65), key=lambda k: (k + 1) / step_s(k + 1))
    policies: dict[str, tuple[int, Callable[[], Policy]]] = {
        "hindsight": (ngram.KEY, lambda: lambda d, agree, m: agree),
        "hindsight, 1-token keys": (1, lambda: lambda d, agree, m: agree),
        "every draft right": (ngram.KEY, lambda: lambda d, agree, m: best_every),
        "hearth's policy": (ngram.KEY, hearth_policy(step_s)),
    }
    default_key = ngram.KEY
    print(f"tokens/s over decoding without drafts, greedy replies of up to {args.max_tokens} "
          "tokens:")
    for workload, pairs in replies.items():
        tokens = sum(len(r) - 1 for _, r in pairs)
        plain = sum(step_s(1) * (len(r) - 1) for _, r in pairs)
        row = []
        for name, (key, make) in policies.items():
            keyed_on(key)
            if name == "every draft right":
                seconds = sum((len(r) - 1) / (best_every + 1) * step_s(best_every + 1)
                              for _, r in pairs)
            else:
                seconds = sum(replay(p, r, make(), step_s) for p, r in pairs)
            row.append(f"{name} x{plain / seconds:.3f}")
        keyed_on(default_key)
        print(f"  {workload:<6} ({tokens} tokens): " + ", ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
