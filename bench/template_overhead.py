"""What the template sandbox's budget costs: a real chat template rendered with and without it.

Hearth renders chat templates in a sandbox that counts output, loop turns and calls against a
budget (``template_budget.py``), so a hostile template can't hang or exhaust the engine. This
prints what that costs on an ordinary template: SmolLM2's own (from the packaged GGUF), a
50-message conversation, rendered by Hearth's ``ChatTemplate`` and by a plain jinja2 sandbox
with the same options, alternating rounds, best of each (other work on the machine slows both
alike). The two renders are checked to be the same text first.

    python bench/template_overhead.py [--rounds 9] [--renders 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backend.engine.chat_template import ChatTemplate
from backend.engine.native import NativeModel
from backend.engine.types import ChatMessage
from bench.peers import starter_path


def timed(render: Callable[[], object], renders: int) -> float:
    started = time.perf_counter()
    for _ in range(renders):
        render()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--renders", type=int, default=100)
    args = parser.parse_args()
    model = NativeModel(starter_path())
    try:
        source = model.chat_template()
    finally:
        model.close()
    assert source, "the starter model has no chat template"
    messages = [ChatMessage("system", "You are terse.")] + [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"Message {i}: " + "lorem ipsum " * 20)
        for i in range(49)]
    reference = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    ).from_string(source)
    context = {"messages": [m.as_template_dict() for m in messages], "bos_token": "",
               "eos_token": "<|im_end|>", "add_generation_prompt": True}
    budgeted = ChatTemplate(source, eos_token="<|im_end|>")
    if budgeted.render(messages) != reference.render(**context):
        raise SystemExit("the budgeted render differs from plain jinja2's")
    rounds = [(timed(lambda: budgeted.render(messages), args.renders),
               timed(lambda: reference.render(**context), args.renders))
              for _ in range(args.rounds)]
    new, old = min(r[0] for r in rounds), min(r[1] for r in rounds)
    print(f"SmolLM2 template, {len(messages)} messages, best of {args.rounds} rounds of "
          f"{args.renders} renders: budgeted {new / args.renders * 1e3:.3f} ms, plain jinja2 "
          f"sandbox {old / args.renders * 1e3:.3f} ms, x{new / old:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
