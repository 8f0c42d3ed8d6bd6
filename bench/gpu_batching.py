"""The batching sweep of ``batching_bench.py`` on an NVIDIA GPU (run on the lent GPU machine).

    python3 bench/gpu_batching.py --out $OUT          (with .gpu carried; see ../shared/gpu)

1. Installs the ``.gpu/*.whl`` wheels into /tmp/site and builds llama.cpp once, with CUDA, from
   the source that ``.gpu/llama-cpp-python-src.tar.gz`` vendors: shared libraries plus the
   ``llama-server`` target. llama-cpp-python's Python package is put next to those libraries,
   so Hearth and llama-server run the very same ggml-cuda build (and it is compiled once, not
   twice: the CUDA kernels take most of the build's five minutes).
2. Writes a synthetic Llama-3-8B-shaped Q4_0 model (``.gpu/synthgguf.py``).
3. Sweeps 1, 2, 4 and 8 streaming clients, as batching_bench.py does: Hearth parallel=N
   (N = clients), Hearth parallel=1, and ``llama-server -np N``, all layers on the GPU, flash
   attention left to llama.cpp (``auto``) in both. Writes ``batching_sweep_gpu.json`` to
   --out after every level (a cut-off run keeps what it measured) and prints tables.

A random-weights model may end a reply early by sampling an end-of-generation token. Each
level records the output tokens it got against requests x max_tokens (``tokens_expected``).

Locally, on the CPU, to check this script before spending GPU time:
    python bench/gpu_batching.py --local --out /tmp/gbt
(tiny model, the installed llama-cpp-python, llama-server from batching_bench's cache).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.benchmark.load import LevelResult, run_level  # noqa: E402
from backend.benchmark.report import format_table, to_json  # noqa: E402
from backend.benchmark.servers import (  # noqa: E402
    ServerProcess,
    _wait_ready,
    free_port,
    hearth_server,
)

KIT = ROOT / ".gpu"
SITE = Path("/tmp/site")
WORK = Path("/tmp/gpu-batching")
BUILD = WORK / "build"
LEVELS = (1, 2, 4, 8)
SHAPE_8B = ["--layers", "32", "--embd", "4096", "--heads", "32", "--kv-heads", "8",
            "--ff", "14336", "--ctx", "32768", "--type", "q4_0"]
SHAPE_TINY = ["--layers", "2", "--embd", "256", "--heads", "4", "--kv-heads", "2",
              "--ff", "512", "--ctx", "4096", "--type", "q4_0"]
LOCAL_LLAMA_SERVER = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                      / "hearth-build" / "llama-server-build" / "bin" / "llama-server")
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


UI_STUB = {  # tools/ui is left out of the kit's source: llama-server without an embedded UI
    "CMakeLists.txt": """add_custom_target(llama-ui-assets)
add_library(llama-ui STATIC ui.cpp)
target_compile_features(llama-ui PRIVATE cxx_std_17)
target_include_directories(llama-ui PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
set_target_properties(llama-ui PROPERTIES POSITION_INDEPENDENT_CODE ON)
""",
    "ui.h": """#pragma once
#include <array>
#include <string>
struct llama_ui_asset {
    std::string name; const unsigned char * data; std::size_t size; std::string etag;
    std::string type;
};
const llama_ui_asset * llama_ui_find_asset(const std::string & name);
bool llama_ui_use_gzip();
const std::array<llama_ui_asset, 0> & llama_ui_get_assets();
""",
    "ui.cpp": """#include "ui.h"
const llama_ui_asset * llama_ui_find_asset(const std::string &) { return nullptr; }
bool llama_ui_use_gzip() { return false; }
const std::array<llama_ui_asset, 0> & llama_ui_get_assets() {
    static const std::array<llama_ui_asset, 0> none{};
    return none;
}
""",
}


def install_wheels() -> None:
    if not (SITE / "fastapi").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--target", str(SITE), *glob.glob(str(KIT / "*.whl"))], check=True)
    os.environ["PYTHONPATH"] = f"{SITE}:{ROOT}"  # synthgguf and the servers: child processes
    sys.path.insert(0, str(SITE))


def unpack_source() -> Path:
    """llama-cpp-python's source from the kit, with a stub tools/ui if it lacks one."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not list(WORK.glob("llama_cpp_python-*")):
        with tarfile.open(KIT / "llama-cpp-python-src.tar.gz") as tar:
            tar.extractall(WORK, filter="fully_trusted")
    src = next(WORK.glob("llama_cpp_python-*"))
    ui = src / "vendor" / "llama.cpp" / "tools" / "ui"
    if not ui.exists():
        ui.mkdir()
        for name, text in UI_STUB.items():
            (ui / name).write_text(text)
    return src


def build(arch: str, with_server: bool = True) -> Path:
    """llama.cpp with CUDA: shared libraries (and llama-server), once per warm machine."""
    server = BUILD / "bin" / "llama-server"
    if (server.exists() or not with_server) and \
            (SITE / "llama_cpp" / "lib" / "libllama.so").exists():
        log("llama.cpp CUDA build found (warm machine): reusing it")
        return server
    src = unpack_source()
    started = time.monotonic()
    subprocess.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(BUILD), "-G",
                    "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_CUDA=on",
                    f"-DCMAKE_CUDA_ARCHITECTURES={arch}", "-DBUILD_SHARED_LIBS=ON",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(WORK / "build.log", "wb") as out:
        targets = ["llama-server", "llama"] if with_server else ["llama"]
        done = subprocess.run(["cmake", "--build", str(BUILD), "--target", *targets,
                               "-j", str(os.cpu_count() or 8)], stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        print((WORK / "build.log").read_text(errors="replace")[-6000:])
        raise SystemExit("the llama.cpp build failed")
    log(f"built llama.cpp with CUDA (llama-server + shared libs) in "
        f"{time.monotonic() - started:.0f} s")
    # llama-cpp-python = its Python package + these libraries in llama_cpp/lib.
    shutil.copytree(src / "llama_cpp", SITE / "llama_cpp", dirs_exist_ok=True)
    lib = SITE / "llama_cpp" / "lib"
    lib.mkdir(exist_ok=True)
    for so in (BUILD / "bin").glob("*.so*"):
        shutil.copy2(so, lib / so.name)
    return server


def vocab_without_reachable_eog(out: Path, pad_to: int | None = None) -> Path:
    """The kit's SmolLM2 vocabulary with its 17 special tokens moved to the end of the id range.

    synthgguf repeats 64 random rows through ``output.weight``, so the logits of ids i and
    i + 64k are equal and a greedy sampler (Hearth's at temperature 0: the first maximum wins)
    only ever picks ids 0..63, where SmolLM2 keeps ``<|endoftext|>``, ``<|im_end|>`` and the
    FIM tokens, all end-of-generation for llama.cpp: replies then stop at random lengths. With
    those ids swapped for the last 17 (texts, types and special ids move together; merges are
    by text), Hearth can't end a reply early; llama-server, whose sampler may pick any of the
    tied ids, gets ``--ignore-eos``. Shapes, sizes and speed are unchanged.
    """
    import gzip

    with gzip.open(KIT / "smollm2-vocab.json.gz", "rt") as fh:
        v = json.load(fh)
    tokens, types = v["tokenizer.ggml.tokens"], v["tokenizer.ggml.token_type"]
    n = len(tokens)
    special = [i for i in range(64) if types[i] != 1]
    where = {i: n - len(special) + k for k, i in enumerate(special)}
    for i, j in where.items():
        tokens[i], tokens[j] = tokens[j], tokens[i]
        types[i], types[j] = types[j], types[i]
    for key, value in list(v.items()):
        if key.endswith("_token_id") and value in where:
            v[key] = where[value]
    if pad_to and pad_to > n:
        # A bigger vocabulary (e.g. Gemma 3's 262,144) costs a bigger output layer and more
        # work per sampled token; filler tokens, never produced by the tokenizer, stand in.
        # They go before the moved special tokens, which must stay the last ids.
        fillers = [f"<filler_{i}>" for i in range(pad_to - n)]
        cut = n - len(special)
        tokens[cut:cut] = fillers
        types[cut:cut] = [1] * len(fillers)
        for key, value in list(v.items()):
            if key.endswith("_token_id") and isinstance(value, int) and value >= cut:
                v[key] = value + len(fillers)
    with gzip.open(out, "wt") as fh:
        json.dump(v, fh)
    return out


def make_model(path: Path, shape: list[str], keep_eos: bool,
               pad_vocab_to: int | None = None) -> Path:
    if not path.exists():
        vocab = KIT / "smollm2-vocab.json.gz" if keep_eos else \
            vocab_without_reachable_eog(WORK / f"vocab-no-eog-{pad_vocab_to or 0}.json.gz",
                                        pad_vocab_to)
        subprocess.run([sys.executable, str(KIT / "synthgguf.py"), "make", str(path),
                        "--vocab", str(vocab), *shape], check=True, stdout=subprocess.DEVNULL)
    return path


class LlamaServer:
    def __init__(self, binary: Path, model: Path, parallel: int, ctx: int, threads: int,
                 gpu: bool, ignore_eos: bool) -> None:
        self.args = [str(binary), "-m", str(model), "--host", "127.0.0.1", "-np",
                     str(parallel), "-c", str(ctx * parallel), "-t", str(threads), "-tb",
                     str(threads), "--no-webui"] + (["-ngl", "999"] if gpu else []) + \
            (["--ignore-eos"] if ignore_eos else [])

    def __enter__(self) -> ServerProcess:
        port = free_port()
        log_path = WORK / f"llama-server-{port}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen([*self.args, "--port", str(port)], stdout=out,
                                    stderr=subprocess.STDOUT)
        self.server = ServerProcess("llama-server", f"http://127.0.0.1:{port}", proc, log_path)
        try:
            _wait_ready(self.server, 300)
        except Exception:
            self.server.stop()
            raise
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def level(url: str, model: str, clients: int, args: argparse.Namespace) -> LevelResult:
    return asyncio.run(run_level(url, model, clients, args.requests, args.max_tokens))


def row(r: LevelResult, args: argparse.Namespace) -> dict:
    out = to_json([r])[0]
    out["tokens"] = round(r.aggregate_tokens_per_s * r.wall_s)
    out["tokens_expected"] = r.requests * args.max_tokens
    return out


def load_line(server: ServerProcess) -> str:
    """What the server said about offload and flash attention (for the record)."""
    keys = ("Loaded ", "offloaded", "flash_attn", "n_ctx_seq", "n_slots", "Using ")
    lines = [ln.strip() for ln in server.log_tail(200_000).splitlines()
             if any(k in ln for k in keys)]
    return " | ".join(dict.fromkeys(lines))[:1500]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    parser.add_argument("--local", action="store_true", help="CPU check with a tiny model")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--arch", default="90", help="CMAKE_CUDA_ARCHITECTURES")
    parser.add_argument("--deadline-s", type=float, default=560,
                        help="start no new server after this many seconds")
    parser.add_argument("--keep-eos", action="store_true",
                        help="the kit's vocabulary as it is (replies may end early)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="series to run: p1 pN ls (default all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    tag = "" if args.keep_eos else "-noeog"
    if args.local:
        binary = LOCAL_LLAMA_SERVER
        model = make_model(WORK / f"synth-tiny{tag}.gguf", SHAPE_TINY, args.keep_eos)
        threads = args.threads or 2
    else:
        # The model is written (a few GB, mostly I/O) while llama.cpp compiles.
        install_wheels()
        writer = concurrent.futures.ThreadPoolExecutor(1).submit(
            make_model, WORK / f"synth-8b{tag}.gguf", SHAPE_8B, args.keep_eos)
        binary = build(args.arch)
        model = writer.result()
        threads = args.threads or 8
        log(f"model {model.stat().st_size / 2**30:.2f} GiB; " + subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,"
             "noheader"], capture_output=True, text=True).stdout.strip())
    series_names = {"p1": "hearth parallel=1", "pN": "hearth parallel=N",
                    "ls": "llama-server -np N"}
    wanted = args.only or list(series_names)
    report: dict = {"model": "synthetic Llama-3-8B shape, Q4_0 (random weights)"
                    if not args.local else "synthetic tiny", "gpu": None,
                    "max_tokens": args.max_tokens, "requests_per_client": args.requests,
                    "ctx_per_slot": args.ctx, "threads": threads,
                    "vocab": "kit's SmolLM2" if args.keep_eos else "SmolLM2, specials moved "
                    "to the last ids; llama-server --ignore-eos", "series": {}, "loads": {}}
    if not args.local:
        report["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,"
                                        "noheader"], capture_output=True, text=True
                                       ).stdout.strip()
    out_json = args.out / "batching_sweep_gpu.json"

    def save() -> None:
        out_json.write_text(json.dumps(report, indent=1))

    def record(key: str, r: LevelResult) -> None:
        report["series"].setdefault(series_names[key], []).append(row(r, args))
        save()
        log(f"{series_names[key]}: {r.clients} clients {r.aggregate_tokens_per_s:.1f} tok/s, "
            f"TTFT p95 {r.ttft_p95_s * 1000:.0f} ms, {r.completed}/{r.requests} done, "
            f"tokens {row(r, args)['tokens']}/{r.requests * args.max_tokens}")

    def time_left() -> bool:
        if time.monotonic() - T0 > args.deadline_s:
            log("deadline reached: no new server started")
            report["cut_off"] = True
            save()
            return False
        return True

    from bench.peers import served_name

    hearth = dict(threads=threads, ctx=args.ctx)
    if "p1" in wanted and time_left():
        with hearth_server(str(model), parallel=1, **hearth) as one:
            report["loads"]["hearth parallel=1"] = load_line(one)
            name = served_name(one.url, model.stem)  # Hearth answers to its listed name
            level(one.url, name, 1, args)  # warm-up
            for n in LEVELS:
                record("p1", level(one.url, name, n, args))
    for n in LEVELS:
        if "pN" in wanted and time_left():
            with hearth_server(str(model), parallel=n, **hearth) as srv:
                report["loads"][f"hearth parallel={n}"] = load_line(srv)
                name = served_name(srv.url, model.stem)
                level(srv.url, name, 1, args)
                record("pN", level(srv.url, name, n, args))
        if "ls" in wanted and time_left():
            with LlamaServer(binary, model, n, args.ctx, threads, not args.local,
                             not args.keep_eos) as srv:
                level(srv.url, "m", 1, args)
                record("ls", level(srv.url, "m", n, args))
                report["loads"][f"llama-server -np {n}"] = load_line(srv)
    save()
    from backend.benchmark.load import LevelResult as LR

    for name, rows in report["series"].items():
        results = [LR(**{k: (float("nan") if v is None else v) for k, v in r.items()
                         if k not in ("failed", "tokens", "tokens_expected")}
                      | {"errors": tuple(r["errors"])}) for r in rows]
        print(format_table(results, name))
    s = report["series"]
    if all(len(s.get(v, [])) == len(LEVELS) for v in series_names.values()):
        n8, p1, ls = (s[series_names[k]][-1]["aggregate_tokens_per_s"] for k in ("pN", "p1",
                                                                                "ls"))
        report["ratios_8_clients"] = {"hearth_pN_over_p1": n8 / p1,
                                      "hearth_pN_over_llama_server": n8 / ls}
        save()
        print(f"8 clients: Hearth p=8 {n8:.1f} tok/s = {n8 / p1:.2f}x Hearth p=1 ({p1:.1f}), "
              f"{n8 / ls:.2f}x llama-server -np 8 ({ls:.1f})")
    print(f"wrote {out_json} in {time.monotonic() - T0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
