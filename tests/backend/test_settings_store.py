"""One settings store: frozen snapshots out, validated atomic ``update()`` in, subscribers told."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pydantic import ValidationError

from backend.errors import InvalidRequest
from backend.settings import EngineSettings, Settings, load_settings, settings_path
from backend.settings_store import SettingsStore


def test_snapshots_are_frozen() -> None:
    snapshot = SettingsStore.open().snapshot()
    with pytest.raises(ValidationError):
        snapshot.engine.n_ctx = 8  # type: ignore[misc]
    with pytest.raises(ValidationError):
        snapshot.server = snapshot.server  # type: ignore[misc]
    assert isinstance(snapshot.server.cors_origins, tuple)


def test_update_validates_saves_and_notifies() -> None:
    store = SettingsStore.open()
    seen: list[Settings] = []
    store.subscribe(seen.append)
    before = store.snapshot()
    after = store.update(engine={"n_ctx": 8192}, server=before.server.model_copy(
        update={"port": 0}))
    assert (after.engine.n_ctx, after.server.port) == (8192, 0)
    assert before.engine.n_ctx == 4096  # the old snapshot is untouched
    assert seen == [after]
    assert load_settings() == after  # saved
    with pytest.raises(InvalidRequest, match="n_ctx"):
        store.update(engine={"n_ctx": 3})
    assert store.snapshot() == after and seen == [after]  # a refused change changes nothing
    store.update(engine=EngineSettings(n_ctx=8192))  # the same: no write, no event
    assert len(seen) == 1


def test_in_memory_store_never_writes() -> None:
    store = SettingsStore.in_memory()
    store.update(server={"port": 1234})
    assert not settings_path().exists()


def test_two_threads_updating_different_sections_lose_nothing() -> None:
    """1,000 updates each, on two sections at once, each applied to the latest snapshot: the
    final state has both threads' last values, every subscriber saw it last, and the file on
    disk holds it too."""
    store = SettingsStore.open()
    seen: list[Settings] = []
    lock = threading.Lock()

    def remember(snapshot: Settings) -> None:
        with lock:
            seen.append(snapshot)

    store.subscribe(remember)
    loop_seen: list[Settings] = []

    async def watch(ready: threading.Event, done: threading.Event) -> None:
        changes = store.changes()
        first = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)
        ready.set()
        loop_seen.append(await first)
        while not (done.is_set() and loop_seen[-1] == store.snapshot()):
            try:
                loop_seen.append(await asyncio.wait_for(anext(changes), 0.2))
            except TimeoutError:
                continue
        await changes.aclose()

    ready, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=asyncio.run, args=(watch(ready, done),))
    watcher.start()
    ready.wait(10)

    def bump_context() -> None:
        for i in range(1000):
            store.update(lambda s, i=i: s.model_copy(update={
                "engine": s.engine.model_copy(update={"n_ctx": 1024 + i})}))

    def bump_port() -> None:
        for i in range(1000):
            store.update(server={"port": 20000 + i})

    threads = [threading.Thread(target=bump_context), threading.Thread(target=bump_port)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join(30)
    final = store.snapshot()
    assert (final.engine.n_ctx, final.server.port) == (1024 + 999, 20000 + 999)
    assert seen[-1] == final and len(seen) == 2000
    assert loop_seen[-1] == final
    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    assert (saved["engine"]["n_ctx"], saved["server"]["port"]) == (2023, 20999)
