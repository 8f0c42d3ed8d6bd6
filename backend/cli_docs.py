"""``hearth docs``: the knowledge library from the command line, and ``--docs`` for ``run``.

    hearth docs add FOLDER [--collection NAME] [--no-wait]   index a folder (waits, showing
                                                            progress, unless --no-wait)
    hearth docs list                                        collections and their state
    hearth docs files COLLECTION                            each file's state or error
    hearth docs search COLLECTION "query" [--mode M]        the best passages
    hearth docs pause|resume|rescan COLLECTION
    hearth docs rm COLLECTION [FOLDER]                      a folder, or the whole collection
    hearth run MODEL --docs COLLECTION "question"           answer from the collection

A front end of ``backend.api``: each command is a call or two on ``Hearth.knowledge``.
Indexing runs in the background of whichever Hearth process is open; ``docs add`` waits for
it by default, since this process ends when the command does (what is left is resumed by
the next Hearth that opens the library: the window, ``hearth serve`` or another command).

Threading: everything on the command's thread; waiting for indexing reads the event stream
on an ``asyncio.run`` loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

from backend.api import (
    ChatMessage,
    Citation,
    FileFailed,
    FileIndexed,
    Grounding,
    Hearth,
    IndexProgress,
)

EXIT_ERROR = 1


def add_docs_command(sub: Any) -> None:
    docs = sub.add_parser("docs", help="the knowledge library: folders of documents to "
                          "chat with")
    verbs = docs.add_subparsers(dest="docs_command", required=True)
    add = verbs.add_parser("add", help="index a folder (PDF, Word, HTML, Markdown, text, code)")
    add.add_argument("folder")
    add.add_argument("--collection", help="the collection to add it to (default: the "
                     "folder's name; made if new)")
    add.add_argument("--no-wait", action="store_true", help="don't wait for indexing (the "
                     "next Hearth to open continues it)")
    verbs.add_parser("list", help="collections and how far their indexing is")
    files = verbs.add_parser("files", help="a collection's files, with errors")
    files.add_argument("collection")
    search = verbs.add_parser("search", help="the best passages for a query")
    search.add_argument("collection")
    search.add_argument("query")
    search.add_argument("--mode", choices=("hybrid", "text", "vector"), default="hybrid")
    search.add_argument("-n", type=int, default=5, help="passages to show")
    for verb, text in (("pause", "pause indexing"), ("resume", "resume indexing"),
                       ("rescan", "look for new, changed and deleted files now")):
        verbs.add_parser(verb, help=text).add_argument("collection")
    rm = verbs.add_parser("rm", help="remove a folder from a collection, or the collection")
    rm.add_argument("collection")
    rm.add_argument("folder", nargs="?")


def add_docs_flag(run: argparse.ArgumentParser) -> None:
    run.add_argument("--docs", action="append", metavar="COLLECTION", default=None,
                     help="answer from this knowledge collection (`hearth docs`); repeatable")


def run_docs_command(args: argparse.Namespace, hearth: Hearth) -> int | None:
    if args.command != "docs":
        return None
    knowledge = hearth.knowledge
    verb = args.docs_command
    if verb == "add":
        info = knowledge.add_folder(args.folder, args.collection)
        print(f"Indexing {args.folder} into '{info.name}'.")
        if args.no_wait:
            return 0
        return asyncio.run(_wait(hearth, info.name))
    if verb == "list":
        return _list(hearth)
    if verb == "files":
        for f in knowledge.files(args.collection):
            detail = f.error or f.note or (f"{f.pages} pages" if f.kind == "pdf" else "")
            print(f"{f.state:<8} {f.path}" + (f"  ({detail})" if detail else ""))
        return 0
    if verb == "search":
        passages = asyncio.run(knowledge.search(args.query, [args.collection], args.n,
                                                mode=args.mode))
        for i, p in enumerate(passages, 1):
            where = f"page {p.page}" if p.page else p.heading or ""
            print(f"[{i}] {p.path}" + (f" ({where})" if where else ""))
            print("    " + " ".join(p.text.split())[:300])
        return 0
    if verb in ("pause", "resume", "rescan"):
        getattr(knowledge, verb)(args.collection)
        return 0 if verb == "pause" else asyncio.run(_wait(hearth, args.collection))
    if verb == "rm":
        if args.folder:
            knowledge.remove_folder(args.collection, args.folder)
        else:
            knowledge.delete_collection(args.collection)
        return 0
    return None


def _list(hearth: Hearth) -> int:
    collections = hearth.knowledge.collections()
    if not collections:
        print("No collections yet. Add a folder: hearth docs add FOLDER")
        return 0
    print(f"{'COLLECTION':<24} {'FILES':>6} {'FAILED':>6} {'PENDING':>7} {'PASSAGES':>8} "
          f"{'VECTORS':>8}  STATE")
    for c in collections:
        state = "paused" if c.paused else "indexing" if c.pending else "ready"
        print(f"{c.name:<24} {c.indexed:>6} {c.failed:>6} {c.pending:>7} {c.chunks:>8} "
              f"{c.embedded:>8}  {state}")
    return 0


async def _wait(hearth: Hearth, collection: str) -> int:
    """Print each file's outcome and the vectors' progress until indexing is idle."""
    knowledge = hearth.knowledge

    async def report() -> None:
        last_note = ""
        async for event in knowledge.events.stream():
            if isinstance(event, FileIndexed) and event.collection == collection:
                print(f"  read {event.path} ({event.chunks} passages)")
            elif isinstance(event, FileFailed) and event.collection == collection:
                print(f"  skipped: {event.error}", file=sys.stderr)
            elif isinstance(event, IndexProgress) and event.collection == collection:
                if event.note and event.note != last_note:
                    print(f"note: {event.note}", file=sys.stderr)
                    last_note = event.note
                if event.state == "embedding":
                    print(f"  vectors {event.chunks_embedded}/{event.chunks_total}", end="\r")

    task = asyncio.create_task(report())
    try:
        await asyncio.to_thread(knowledge.wait_idle)
        await asyncio.sleep(0.05)  # the last events reach the stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    info = knowledge.collection(collection)
    print(f"'{info.name}': {info.indexed} files, {info.chunks} passages "
          f"({info.embedded} with vectors), {info.failed} could not be read.")
    return 0


async def ground(hearth: Hearth, model: str, messages: Sequence[ChatMessage],
                 collections: Sequence[str]) -> Grounding:
    """The messages with the collections' best passages for the last question."""
    return await hearth.knowledge.ground(model, messages, collections=collections)


def print_sources(citations: Sequence[Citation]) -> None:
    if citations:
        print("Sources: " + "; ".join(f"[{c.number}] {c.label}" for c in citations),
              file=sys.stderr)
