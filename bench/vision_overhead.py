"""Where a follow-up turn about an image spends its time on Hearth's server (issue #18).

    python bench/vision_overhead.py [--model M.gguf --mmproj P.gguf] [--n-gpu-layers N]
        [--image-size 1024 768] [--rounds 5]

Runs ``hearth serve`` in this process with the stages of a request timed (body parsing,
base64, image checks, prompt preparation, the projector's encode) and the engine's own time
to first token, then asks three first turns, each with a fresh image, and ``--rounds``
follow-ups about the last (streamed, as vision_bench asks). Prints the client's time to
first text, the engine's, and each stage's share: what lies between the two is the HTTP and
application path.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import inspect
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ["backend.server.validation:check_text",
          "backend.server.openai_routes:_messages",
          "backend.application.images:image_from_data_url",
          "backend.application.images:image_from_base64",
          "backend.application.images:_decode_base64",
          "backend.application.images:checked_image",
          "backend.application.images:check_images",
          "backend.engine.image_prompt:prepare_image_prompt",
          "backend.engine.image_prompt:_reuse",
          "backend.engine.image_prompt:_tokenize",
          "backend.engine.image_decode:decode_image"]

spent: collections.defaultdict[str, float] = collections.defaultdict(float)
calls: collections.Counter[str] = collections.Counter()
engine_ttft: list[float] = []
# Moments of each follow-up, on this process's clock (the client is in this process too).
marks: list[dict[str, float]] = []


def mark(label: str) -> None:
    # Wall-clock time: the client runs in a process of its own (in this one, it would take
    # the GIL from the server's threads and slow what is measured).
    if marks and label not in marks[-1]:  # (the first of its kind in a request)
        marks[-1][label] = time.time()


def marked(label: str, f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    async def wrapped(*a: Any, **k: Any) -> Any:
        mark(label)
        try:
            return await f(*a, **k)
        finally:
            mark(label + " done")
    return wrapped


def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def wrapped_async(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return await f(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapped_async

    @functools.wraps(f)
    def wrapped(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t
            calls[name] += 1
    return wrapped


def instrument() -> None:
    import pydantic

    import app.launcher  # noqa: F401  (everything the server imports)
    import backend.server.app  # noqa: F401
    from backend.engine.engine import Engine
    from backend.engine.types import Finished

    for target in STAGES:
        module_name, name = target.split(":")
        original = getattr(importlib.import_module(module_name), name, None)
        if original is None:
            continue
        wrapper = timed(name, original)
        for module in list(sys.modules.values()):  # every module that imported it by name
            if getattr(module, "__name__", "").startswith("backend") and \
                    getattr(module, name, None) is original:
                setattr(module, name, wrapper)
    from backend.engine.vision import VisionContext

    VisionContext.encode = timed("image encode (projector)",  # type: ignore[method-assign]
                                 VisionContext.encode)
    validate = pydantic.BaseModel.model_validate_json.__func__  # type: ignore[attr-defined]
    pydantic.BaseModel.model_validate_json = classmethod(  # type: ignore[method-assign]
        timed("model_validate_json (body)", validate))
    from backend.application.dispatch import Dispatcher
    from backend.engine.types import TextDelta
    from backend.server import openai_routes

    openai_routes._messages = marked("route: messages",  # type: ignore[attr-defined]
                                     openai_routes._messages)  # type: ignore[attr-defined]
    Dispatcher.generate = marked("dispatch", Dispatcher.generate)  # type: ignore[method-assign]
    Engine._prepare = marked("engine: prepare", Engine._prepare)  # type: ignore[method-assign]
    generate = Engine.generate

    async def generate_timed(self: Engine, request: Any) -> Any:
        mark("engine: first read")
        async for event in generate(self, request):
            if isinstance(event, TextDelta):
                mark("engine: first text out")
            if isinstance(event, Finished):
                engine_ttft.append(event.usage.time_to_first_token_s)
            yield event
    Engine.generate = generate_timed  # type: ignore[method-assign]


def report(title: str, client: list[float], n: int) -> None:
    print(f"{title}: client TTFT median {statistics.median(client) * 1000:.1f} ms, engine TTFT "
          f"median {statistics.median(engine_ttft) * 1000:.1f} ms")
    for stage, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<28} {seconds / n * 1000:8.2f} ms a request ({calls[stage] / n:.0f} "
              "calls)")
    spent.clear()
    calls.clear()
    engine_ttft.clear()


CLIENT = """
import json, sys, time
sys.path.insert(0, {root!r})
from bench.vision_bench import FOLLOW_UP, QUESTION, server_turn
url, name, rounds = {url!r}, {name!r}, {rounds}
images = [open(p, "rb").read() for p in {paths!r}]
server_turn(url, [], images[0], QUESTION, 4, name)  # warm-up
print("READY", flush=True); sys.stdin.readline()
history = []
for image in images[1:]:
    history = []
    print("FIRST", server_turn(url, history, image, QUESTION, 4, name)[0], flush=True)
print("FOLLOW", flush=True); sys.stdin.readline()
for _ in range(rounds):
    turn = [dict(m) for m in history]
    print("SENT", flush=True); sys.stdin.readline()
    sent = time.time()
    ttft = server_turn(url, turn, None, FOLLOW_UP, 4, name)[0]
    print("TURN", sent, ttft, flush=True)
print("DONE", flush=True)
"""


def ask(url: str, name: str, images: list[Path], rounds: int) -> None:
    """The client in a process of its own, in step with this one through its pipes."""
    import subprocess

    code = CLIENT.format(root=str(ROOT), url=url, name=name, rounds=rounds,
                         paths=[str(p) for p in images])
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None

    def line() -> list[str]:
        return proc.stdout.readline().split()  # type: ignore[union-attr]

    assert line() == ["READY"]
    spent.clear()
    calls.clear()
    engine_ttft.clear()
    proc.stdin.write("\n")
    proc.stdin.flush()
    firsts = []
    while (words := line())[0] == "FIRST":
        firsts.append(float(words[1]))
    report(f"first turns ({len(firsts)}, each a new image)", firsts, len(firsts))
    client = []
    for _ in range(rounds):
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert line() == ["SENT"]
        marks.append({})
        proc.stdin.write("\n")
        proc.stdin.flush()
        words = line()
        client.append(float(words[2]))
        marks[-1]["client: send"] = float(words[1])
        marks[-1]["client: first text"] = float(words[1]) + float(words[2])
    proc.wait()
    report(f"follow-ups ({rounds}) about the last image", client, rounds)
    print("  timeline of a follow-up (medians, ms after the client sent it):")
    labels = sorted(marks[0], key=lambda k: marks[0][k])
    for label in labels:
        at = statistics.median(m[label] - m["client: send"] for m in marks if label in m)
        print(f"    {at * 1000:8.2f}  {label}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--mmproj", type=Path)
    parser.add_argument("--preset", default="vit-s-224")
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, nargs=2, default=(1024, 768))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-kind", default="photo", choices=("photo", "noise"))
    args = parser.parse_args()
    from bench.peers import free_port, starter_path
    from bench.vision_bench import IMAGE_KINDS, make_projector

    model = args.model or starter_path()
    work = Path(tempfile.mkdtemp(prefix="vision-overhead-"))
    mmproj = args.mmproj or make_projector(model, args.preset, work)
    (work / "pair").mkdir()
    (work / "pair" / model.name).symlink_to(model.resolve())
    (work / "pair" / f"mmproj-{mmproj.name}").symlink_to(mmproj.resolve())
    home = work / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text(
        json.dumps({"engine": {"gpu_layers": args.n_gpu_layers}}))
    os.environ["HEARTH_HOME"] = str(home)
    instrument()
    port = free_port()
    make_image = IMAGE_KINDS[args.image_kind][0]
    images = []
    for n in range(4):
        images.append(work / f"image-{n}")
        images[-1].write_bytes(make_image(7 + n, tuple(args.image_size)))
    print(f"images: {args.image_kind} {args.image_size[0]}x{args.image_size[1]}, "
          f"{images[0].stat().st_size / 1e6:.2f} MB", flush=True)

    def client() -> None:
        import httpx

        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                models = httpx.get(f"{url}/v1/models").json()["data"]
                break
            except Exception:
                time.sleep(0.5)
        try:
            ask(url, models[0]["id"], images, args.rounds)
        finally:
            os._exit(0)

    threading.Thread(target=client, daemon=True).start()
    from app.launcher import main as launch

    return launch(["serve", "--model", str(work / "pair" / model.name), "--port", str(port),
                   "--threads", str(args.threads), "--ctx", "4096", "--parallel", "1"])


if __name__ == "__main__":
    raise SystemExit(main())
