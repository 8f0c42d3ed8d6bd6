"""Load model files the way Hearth does, in a process of its own: a crash kills only this.

    python -m tests.backend.load_probe [--unchecked] FILE...

For each file: ``NativeModel`` (Hearth's checks, then llama.cpp's load), and when that works a
small context and one decoded batch, since some bad tensors load fine and crash in the first
matrix product. Prints one JSON line per file *before* touching it (``start``) and one after
(``outcome``: ``refused`` with the error's sentence, or ``ran``), so that a parent which sees
the process die from a signal knows which file did it. ``--unchecked`` skips Hearth's file
check and hands the file straight to llama.cpp: what happened before a check existed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def probe(path: Path) -> None:
    from backend.engine.native import ContextConfig, NativeContext, NativeModel
    from backend.errors import BackendError

    _say(start=path.name)
    try:
        model = NativeModel(path)
    except BackendError as exc:
        _say(file=path.name, outcome="refused", kind=type(exc).__name__,
             message=exc.user_message)
        return
    try:
        ctx = NativeContext(model, ContextConfig(n_ctx=64, n_batch=16, n_ubatch=16,
                                                 n_seq_max=1, n_threads=1,
                                                 n_threads_batch=1))
        try:
            ctx.batch_add_many([1, 2, 3, 4], 0, 0, True)
            ctx.decode()
        finally:
            ctx.close()
    except BackendError as exc:
        _say(file=path.name, outcome="refused", kind=type(exc).__name__,
             message=exc.user_message)
    else:
        _say(file=path.name, outcome="ran")
    finally:
        model.close()


def main(args: list[str]) -> None:
    # An abort here is an expected outcome for the parent to report, not a core file.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    paths = [a for a in args if a != "--unchecked"]
    if len(paths) < len(args):
        import backend.engine.native

        backend.engine.native.check_gguf_file = lambda path: None
    for name in paths:
        probe(Path(name))


if __name__ == "__main__":
    main(sys.argv[1:])
