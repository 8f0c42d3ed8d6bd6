"""Images (issue #18): time to first token for a 1-image prompt, Hearth against llama-server.

    python bench/vision_bench.py [--model M.gguf] [--mmproj P.gguf | --preset vit-s-224]
        [--n-gpu-layers N] [--threads T] [--rounds 3] [--llama-server PATH] [--json out.json]

Both sides load the same text model and projector (a random-weight one written by
``tests/fixtures/synth_mmproj.py`` unless --mmproj names one, as wide as the model) with the
same threads, context and GPU layers, and are asked the same way: a streamed OpenAI chat
request over loopback HTTP with the image as a data URL (``hearth serve --model`` with the
projector beside the model, and ``llama-server -m MODEL --mmproj PROJ``). Every round sends
a fresh image (random noise, PNG, so neither side has it cached) with one question, then a
follow-up turn about the same image (the first turn's messages, the reply, a new question).
Measured on the client: time to first token of each turn. Also: Hearth's image encode time
(its projector's counter, from the engine run in this process once the servers are done) and
llama-server's logged prompt eval time (image and text together; it logs no encode time).
Rounds alternate between the sides; medians are printed with the ratios the issue asks for:
Hearth's first-turn TTFT over llama-server's (target <= 1.05) and each side's follow-up over
its first turn (target <= 0.2).

On the GPU machine: ``bench/gpu_vision.py`` (8B-shaped model, ViT-L/14-336 projector).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import (  # noqa: E402
    LLAMA_SERVER,
    chat,
    hearth,
    llama_server,
    median,
    served_name,
    starter_path,
)

QUESTION = "What is in this picture? Describe it."
FOLLOW_UP = "What colours stand out the most?"


def noise_png(seed: int, size: tuple[int, int]) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def photo_jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """A photo-like picture (smooth light, shapes, a little sensor noise) as a JPEG of quality
    90: what a user attaches (a 1024x768 one is ~0.1-0.3 MB), where random noise as PNG is
    the worst case for the wire (2.4 MB at that size, as base64 3.2 MB, sent again with
    every turn of the conversation)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 215, 3)
    slope = rng.uniform(-0.15, 0.15, (3, 2))
    pixels = np.stack([base[c] + slope[c, 0] * x * 640 / w + slope[c, 1] * y * 480 / h
                       for c in range(3)], axis=-1)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(w / 30, w / 5), rng.uniform(h / 30, h / 5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x0 - rx, y0 - ry, x0 + rx, y0 + ry), fill=colour)
    picture = picture.filter(ImageFilter.GaussianBlur(2))
    grain = rng.normal(0, 6, (h, w, 3))
    pixels = np.clip(np.asarray(picture, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


IMAGE_KINDS = {"photo": (photo_jpeg, "image/jpeg"), "noise": (noise_png, "image/png")}


def make_projector(model: Path, preset: str, out_dir: Path) -> Path:
    from backend.library.gguf_meta import read_gguf_metadata
    from tests.fixtures.synth_mmproj import PRESETS, write_projector

    n_embd = read_gguf_metadata(model).n_embd
    shape = PRESETS[preset]
    shape = type(shape)(**{**shape.__dict__, "out_embd": n_embd})
    path = write_projector(out_dir / f"mmproj-{preset}-{n_embd}.gguf", shape)
    print(f"projector: {path.name} ({path.stat().st_size / 1e6:.0f} MB, {shape.n_patches} "
          f"image tokens, out {n_embd})", flush=True)
    return path


# -- Hearth -------------------------------------------------------------------------------
class HearthSide:
    def __init__(self, model: Path, mmproj: Path, args: argparse.Namespace) -> None:
        from backend.engine.engine import Engine
        from backend.engine.types import LoadPlan
        from backend.library.local import LocalModel

        self.engine = Engine()
        plan = LoadPlan(n_ctx=args.ctx, n_parallel=1, n_threads=args.threads,
                        n_gpu_layers=args.n_gpu_layers, mmproj_path=str(mmproj))
        self.info = asyncio.run(self.engine.load(LocalModel("bench", model, "local"), plan))

    def _vision(self) -> Any:
        return self.engine._scheduler.state.vision  # type: ignore[union-attr]

    def turn(self, history: list[Any], image: bytes | None, text: str, max_tokens: int
             ) -> tuple[float, str, float, int]:
        """(ttft_s, reply, encode_s, cached prompt tokens) of one greedy streamed turn."""
        from backend.engine.types import (
            ChatMessage,
            Finished,
            GenerationRequest,
            ImageInput,
            SamplingParams,
            TextDelta,
        )

        images = (ImageInput(image, "image/" + ("png" if image[:4] == b"\x89PNG" else
                                                "jpeg")),) if image else ()
        message = ChatMessage("user", text, images=images)
        request = GenerationRequest(messages=(*history, message), max_tokens=max_tokens,
                                    sampling=SamplingParams(temperature=0.0))
        vision = self._vision()
        encode_before = vision.encode_seconds

        async def run() -> tuple[float, str, int]:
            started, first, parts, cached = time.perf_counter(), None, [], 0
            async for event in self.engine.generate(request):
                if isinstance(event, TextDelta):
                    first = first or time.perf_counter()
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    cached = event.usage.cached_prompt_tokens
            return (first or time.perf_counter()) - started, "".join(parts), cached

        ttft, reply, cached = asyncio.run(run())
        history.extend([message, ChatMessage("assistant", reply)])
        return ttft, reply, vision.encode_seconds - encode_before, cached

    def close(self) -> None:
        self.engine.close()


# -- either server, over HTTP ------------------------------------------------------------
def server_turn(url: str, history: list[dict[str, Any]], image: bytes | None, text: str,
                max_tokens: int, model: str = "bench") -> tuple[float, str]:
    content: Any = text
    if image:
        data = base64.b64encode(image).decode()
        kind = "png" if image[:4] == b"\x89PNG" else "jpeg"
        content = [{"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{data}"}},
                   {"type": "text", "text": text}]
    history.append({"role": "user", "content": content})
    reply = chat(url, model, history, max_tokens, extra={"cache_prompt": True})
    history.append({"role": "assistant", "content": reply.text})
    return reply.ttft_s, reply.text


# llama-server logs each turn's "prompt eval time = N ms / M tokens": reading the image
# (encode and decode) and the text, without the HTTP and image-decoding time around it.
PROMPT_EVAL = re.compile(r"prompt eval time =\s*(\d+(?:\.\d+)?) ms /\s*(\d+) tokens")


def prompt_evals(log_text: str) -> list[tuple[float, int]]:
    return [(float(ms) / 1000, int(n)) for ms, n in PROMPT_EVAL.findall(log_text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="text model GGUF (default: SmolLM2)")
    parser.add_argument("--mmproj", type=Path, help="projector GGUF (default: synthetic)")
    parser.add_argument("--preset", default="vit-s-224",
                        help="synthetic projector size: tiny, vit-s-224, vit-l-336")
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--image-size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--image-kind", choices=sorted(IMAGE_KINDS), default="photo",
                        help="photo: a photo-like JPEG; noise: random pixels as PNG (the "
                        "largest file of that size: the wire's worst case)")
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    parser.add_argument("--server-arg", action="append", default=[],
                        help="one more llama-server argument (repeat it)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-encode", action="store_true",
                        help="skip timing the encode in this process (bench/vision_overhead.py "
                        "times it inside a server)")
    args = parser.parse_args(argv)

    model = args.model or starter_path()
    work = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    mmproj = args.mmproj or make_projector(model, args.preset, work)
    # `hearth serve --model PATH` pairs the model with the projector in its folder.
    beside = work / "pair"
    beside.mkdir()
    (beside / model.name).symlink_to(model.resolve())
    (beside / f"mmproj-{mmproj.name}").symlink_to(mmproj.resolve())
    rows: dict[str, list[dict[str, float]]] = {"hearth": [], "llama-server": []}
    extra = ["--mmproj", str(mmproj), "-ngl", str(args.n_gpu_layers), *args.server_arg]
    if args.n_gpu_layers == 0:
        extra.append("--no-mmproj-offload")
    make_image = IMAGE_KINDS[args.image_kind][0]
    images = [make_image(1000 + n, tuple(args.image_size)) for n in range(args.rounds + 1)]
    print(f"images: {args.image_kind}, {args.image_size[0]}x{args.image_size[1]}, "
          f"{statistics.median(len(i) for i in images) / 1e6:.2f} MB each", flush=True)
    with hearth(beside / model.name, threads=args.threads, ctx=args.ctx,
                engine={"gpu_layers": args.n_gpu_layers}) as ours, \
            llama_server(model, threads=args.threads, ctx=args.ctx, extra=extra,
                         binary=args.llama_server) as server:
        name = served_name(ours.url, model.stem)
        for round_no, image in enumerate(images):  # round 0 warms both sides up
            h_hist: list[dict[str, Any]] = []
            t1, _ = server_turn(ours.url, h_hist, image, QUESTION, args.max_tokens, name)
            t2, _ = server_turn(ours.url, h_hist, None, FOLLOW_UP, args.max_tokens, name)
            s_hist: list[dict[str, Any]] = []
            before = len(prompt_evals(server.log_tail(10**8)))
            s1, _ = server_turn(server.url, s_hist, image, QUESTION, args.max_tokens)
            s2, _ = server_turn(server.url, s_hist, None, FOLLOW_UP, args.max_tokens)
            time.sleep(0.2)  # its log line follows the stream's end
            evals = prompt_evals(server.log_tail(10**8))[before:]
            if round_no == 0:
                continue
            rows["hearth"].append({"ttft_s": t1, "follow_up_ttft_s": t2})
            rows["llama-server"].append({
                "ttft_s": s1, "follow_up_ttft_s": s2,
                "prompt_eval_s": evals[0][0] if evals else float("nan"),
                "follow_up_prompt_eval_s": evals[1][0] if len(evals) > 1 else float("nan")})
            print(f"round {round_no}: hearth ttft {t1 * 1000:.0f} ms, follow-up "
                  f"{t2 * 1000:.0f} ms | llama-server ttft {s1 * 1000:.0f} ms (prompt eval "
                  f"{evals[0][0] * 1000 if evals else -1:.0f}), follow-up {s2 * 1000:.0f} ms",
                  flush=True)
    report(rows, model, mmproj, args)  # saved before the in-process part, which may crash
    if args.no_encode:
        return 0
    # Hearth's encode time, from its projector's counter: the engine in this process, alone
    # on the machine now, the same images.
    side = HearthSide(model, mmproj, args)
    try:
        for round_no, image in enumerate(images):
            _, _, encode_s, _ = side.turn([], image, QUESTION, 1)
            if round_no:
                rows["hearth"][round_no - 1]["encode_s"] = encode_s
    finally:
        side.close()
    report(rows, model, mmproj, args)
    return 0


def report(rows: dict[str, list[dict[str, float]]], model: Path, mmproj: Path,
           args: argparse.Namespace) -> None:
    summary = {side: {key: median([r[key] for r in side_rows]) for key in side_rows[0]}
               for side, side_rows in rows.items() if side_rows}
    h, s = summary["hearth"], summary["llama-server"]
    ratios = {"ttft_hearth_over_llama_server": h["ttft_s"] / s["ttft_s"],
              "follow_up_hearth_over_llama_server": h["follow_up_ttft_s"]
              / s["follow_up_ttft_s"],
              "hearth_follow_up_over_first": h["follow_up_ttft_s"] / h["ttft_s"],
              "llama_server_follow_up_over_first": s["follow_up_ttft_s"] / s["ttft_s"]}
    print(f"\nmedians of {args.rounds} rounds ({model.name} + {mmproj.name}, "
          f"{args.threads} threads, ngl {args.n_gpu_layers}):")
    encode = f"{h['encode_s'] * 1000:.1f} ms" if "encode_s" in h else "not measured yet"
    print(f"  hearth        first-turn TTFT {h['ttft_s'] * 1000:8.1f} ms (image encode "
          f"{encode}), follow-up TTFT {h['follow_up_ttft_s'] * 1000:8.1f}"
          " ms")
    print(f"  llama-server  first-turn TTFT {s['ttft_s'] * 1000:8.1f} ms (prompt eval "
          f"{s['prompt_eval_s'] * 1000:.1f} ms), follow-up TTFT "
          f"{s['follow_up_ttft_s'] * 1000:8.1f} ms")
    for name, value in ratios.items():
        print(f"  {name:<36} {value:6.3f}")
    if args.json:
        args.json.write_text(json.dumps({"model": model.name, "mmproj": mmproj.name,
                                         "args": {k: str(v) for k, v in vars(args).items()},
                                         "rounds": rows, "medians": summary,
                                         "ratios": ratios}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
