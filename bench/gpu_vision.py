"""Issue #18 on an NVIDIA GPU: ``vision_bench.py`` at a Llama-3-8B text shape with a
CLIP ViT-L/14-336-sized projector (random weights), Hearth against llama-server.

    python3 bench/gpu_vision.py --out $OUT     (on the GPU machine; the kit as .gpu, with a
                                               Pillow wheel for its Python)

Builds llama.cpp with CUDA once (``gpu_batching.build``: Hearth's shared libraries, libmtmd
among them, and ``llama-server`` from the same build), writes the 8B-shaped Q4_0 model
(SmolLM2's vocabulary with its end-of-generation tokens out of greedy reach) and a
4,096-wide ViT-L/14 336-px projector (576 image tokens), then runs vision_bench with every
layer and the projector on the GPU (``vision_gpu_{kind}.json`` to --out) and
vision_overhead (the encode time and where a follow-up's time goes, inside the server), for
each --image-kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_batching  # noqa: E402
from bench.gpu_batching import SHAPE_8B, WORK, log  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arch", default="90")
    parser.add_argument("--image-kind", nargs="+", default=["photo"],
                        choices=("photo", "noise"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gpu_batching.install_wheels()
    server = gpu_batching.build(args.arch)
    log("writing the 8B-shaped model and the ViT-L projector")
    model = gpu_batching.make_model(WORK / "m8b-q4_0.gguf", SHAPE_8B, keep_eos=False)
    from tests.fixtures.synth_mmproj import PRESETS, write_projector

    shape = PRESETS["vit-l-336"]
    mmproj = WORK / "mmproj-vit-l-336-4096.gguf"
    if not mmproj.exists():
        write_projector(mmproj, type(shape)(**{**shape.__dict__, "out_embd": 4096}))
    log("measuring")
    # In a process of its own: run in this one (after the build and gguf's imports), the
    # model load crashed inside llama.cpp on the H200 machine, while the same load in a
    # fresh process works.
    import os
    import subprocess

    rc = 0
    for kind in args.image_kind:
        log(f"vision_bench, {kind} images")
        rc |= subprocess.run([
            sys.executable, "-X", "faulthandler", str(ROOT / "bench" / "vision_bench.py"),
            "--model", str(model), "--mmproj", str(mmproj), "--n-gpu-layers", "999",
            "--threads", "8", "--ctx", "4096", "--rounds", str(args.rounds),
            "--max-tokens", "8", "--image-size", "1024", "768", "--image-kind", kind,
            "--no-encode", "--llama-server", str(server), "--server-arg=--ignore-eos",
            "--json", str(args.out / f"vision_gpu_{kind}.json")], env=os.environ).returncode
        # The encode time and where a follow-up's time goes, inside Hearth's server.
        log(f"vision_overhead, {kind} images")
        rc |= subprocess.run([
            sys.executable, "-X", "faulthandler", str(ROOT / "bench" / "vision_overhead.py"),
            "--model", str(model), "--mmproj", str(mmproj), "--n-gpu-layers", "999",
            "--threads", "8", "--image-size", "1024", "768", "--image-kind", kind],
            env=os.environ, timeout=240).returncode
    return rc

if __name__ == "__main__":
    raise SystemExit(main())
