"""Images from what front ends are given (application/images.py): data URLs, base64, files and
remote URLs, with hostile inputs; the request builder's per-request limits; the vision check
that refuses a text-only model before loading it, naming the installed models that can see."""

from __future__ import annotations

import asyncio
import base64
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.application import images as intake
from backend.application.capabilities import check_vision
from backend.application.hearth import Hearth
from backend.application.requests import build_request
from backend.engine.types import ChatMessage, ImageInput
from backend.errors import ImageRejected, VisionUnsupported
from backend.library.local import models_dir
from backend.settings import ImageSettings, Settings
from backend.settings_store import SettingsStore
from tests.backend.image_crafting import png
from tests.library.projectors import write_projector

LIMITS = ImageSettings()
PNG = png(4, 4)
B64 = base64.b64encode(PNG).decode()
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# --- inline images ---------------------------------------------------------------------------

def test_data_urls_and_base64_become_images() -> None:
    image = run(intake.image_from_url(f"data:image/png;base64,{B64}", "Image 1", LIMITS))
    assert image.data == PNG and image.media_type == "image/png"
    # Whitespace in base64 (wrapped lines) is fine; the declared type may be left out.
    wrapped = "\n".join(B64[i:i + 8] for i in range(0, len(B64), 8))
    assert intake.image_from_base64(wrapped, "Image 1", LIMITS).data == PNG
    assert run(intake.image_from_url(f"data:;base64,{B64}", "Image 1", LIMITS)).data == PNG


@pytest.mark.parametrize(("url", "words"), [
    (f"data:image/png;base64,{B64[:-3]}!!!", "not valid base64"),
    ("data:image/png;base64,", "is empty"),
    (f"data:image/png,{B64}", "without base64"),
    (f"data:image/svg+xml;base64,{base64.b64encode(SVG).decode()}", "SVG"),
    (f"data:image/png;base64,{base64.b64encode(SVG).decode()}", "SVG"),  # lying about it
    (f"data:text/html;base64,{B64}", "declared as 'text/html'"),
    (f"data:image/png;base64,{base64.b64encode(b'MZ' + bytes(200)).decode()}",
     "isn't a PNG, JPEG, WebP or GIF"),
    ("file:///etc/passwd", "a file: URL"),
    ("ftp://example.com/a.png", "a ftp: URL"),
    ("/etc/passwd", "no URL Hearth can use"),
    ("https://example.com/cat.png", "allow_remote_urls"),
    ("http://127.0.0.1:1/x.png", "allow_remote_urls"),
])
def test_hostile_image_urls_are_refused_with_a_sentence(url: str, words: str) -> None:
    with pytest.raises(ImageRejected, match=words) as caught:
        run(intake.image_from_url(url, "Image 3 (messages[1])", LIMITS))
    assert caught.value.user_message.startswith("Image 3 (messages[1])")
    assert caught.value.http_status == 400


def test_a_huge_image_is_refused_before_it_is_decoded() -> None:
    small = ImageSettings(max_image_bytes=64 * 1024)
    huge = "data:image/png;base64," + "A" * (50 << 20)  # 50 MB of base64
    started = time.perf_counter()
    with pytest.raises(ImageRejected, match="larger than 65,536 bytes"):
        run(intake.image_from_url(huge, "Image 1", small))
    with pytest.raises(ImageRejected, match="larger than 20 MB"):
        run(intake.image_from_url(huge, "Image 1", LIMITS))
    assert time.perf_counter() - started < 1.0  # length arithmetic, no decoding


def test_image_files_for_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    assert intake.image_from_file(tmp_path / "cat.png", LIMITS).media_type == "image/png"
    (tmp_path / "x.svg").write_bytes(SVG)
    with pytest.raises(ImageRejected, match="SVG"):
        intake.image_from_file(tmp_path / "x.svg", LIMITS)
    with pytest.raises(ImageRejected, match="can't read"):
        intake.image_from_file(tmp_path / "missing.png", LIMITS)


# --- per-request limits, in the one request builder -------------------------------------------

def test_the_request_builder_limits_images_per_request() -> None:
    image = ImageInput(PNG, "image/png")
    ok = (ChatMessage("user", "look", images=(image,) * 16),)
    assert build_request(messages=ok, settings=Settings()).messages[0].images == (image,) * 16
    few = Settings(images=ImageSettings(max_images=8))
    too_many = (ChatMessage("user", "a", images=(image,) * 5),
                ChatMessage("user", "b", images=(image,) * 4))  # a chat's turns count together
    with pytest.raises(ImageRejected, match="carries 9 images; Hearth takes at most 8"):
        build_request(messages=too_many, settings=few)
    hundred = (ChatMessage("user", "x", images=(image,) * 100),)
    with pytest.raises(ImageRejected, match="carries 100 images"):
        build_request(messages=hundred, settings=Settings())
    tight = Settings(images=ImageSettings(max_image_bytes=1024))
    big = ImageInput(PNG + bytes(2000), "image/png")
    with pytest.raises(ImageRejected, match="Image 1 is larger than 1,024 bytes"):
        build_request(messages=(ChatMessage("user", "x", images=(big,)),), settings=tight)


# --- remote URLs, when allowed ----------------------------------------------------------------

ALLOWED = ImageSettings(allow_remote_urls=True, fetch_timeout_s=2.0)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png", "http://localhost:8080/x.png", "http://[::1]/x.png",
    "http://10.0.0.7/x.png", "http://192.168.1.1/x.png", "http://169.254.169.254/latest",
    "http://0.0.0.0/x.png", "http://[::ffff:127.0.0.1]/x.png", "http://224.0.0.1/x.png",
])
def test_local_and_private_hosts_are_refused_even_when_allowed(url: str) -> None:
    with pytest.raises(ImageRejected, match="local or private-network"):
        run(intake.image_from_url(url, "Image 1", ALLOWED))


class _ImageHandler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        if self.path == "/slow":
            time.sleep(3)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the timeout case) is expected here


@pytest.fixture
def image_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A loopback server standing in for a public host (the address check is told so)."""
    server = _QuietServer(("127.0.0.1", 0), _ImageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _ImageHandler.routes = {
        "/cat.png": (200, {"Content-Type": "image/png"}, PNG),
        "/page": (200, {"Content-Type": "text/html"}, b"<html></html>"),
        "/fake.png": (200, {"Content-Type": "image/png"}, SVG),
        "/big.png": (200, {"Content-Type": "image/png", "Content-Length": str(50 << 20)}, b""),
        "/moved": (302, {"Location": "/cat.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/slow": (200, {"Content-Type": "image/png"}, PNG),
        "/gone": (404, {}, b""),
    }
    monkeypatch.setattr(intake, "is_public_address", lambda address: True)
    yield base
    server.shutdown()
    server.server_close()


def test_an_allowed_remote_image_is_fetched_and_checked(image_host: str) -> None:
    assert run(intake.image_from_url(f"{image_host}/cat.png", "Image 1", ALLOWED)).data == PNG
    assert run(intake.image_from_url(f"{image_host}/moved", "Image 1", ALLOWED)).data == PNG
    for path, words in [("/page", "served as 'text/html'"), ("/fake.png", "SVG"),
                        ("/big.png", "larger than 20 MB"), ("/loop", "redirected more"),
                        ("/slow", "took longer than 2 s"), ("/gone", "HTTP 404")]:
        with pytest.raises(ImageRejected, match=words):
            run(intake.image_from_url(f"{image_host}{path}", "Image 1", ALLOWED))


# --- the vision check -------------------------------------------------------------------------

def test_check_vision_names_the_models_that_can_see() -> None:
    check_vision("m", True, [])
    with pytest.raises(VisionUnsupported, match="Installed models that can: a/b:Q4, c"):
        check_vision("smollm2:135m", False, ["a/b:Q4", "c"])
    with pytest.raises(VisionUnsupported, match="No installed model can"):
        check_vision("smollm2:135m", False, [])


def test_a_text_only_model_given_an_image_is_refused_before_loading(
        smollm2_path: Path) -> None:
    folder = models_dir() / "o" / "Smol-GGUF"
    folder.mkdir(parents=True)
    shutil.copy(smollm2_path, folder / "Smol-Q4_1.gguf")
    write_projector(folder / "mmproj-F16.gguf", 576)
    hearth = Hearth(SettingsStore.open())
    try:
        turn = (ChatMessage("user", "What is this?", images=(ImageInput(PNG, "image/png"),)),)
        with pytest.raises(VisionUnsupported) as caught:
            run(hearth.generate("smollm2:135m", messages=turn))
        message = caught.value.user_message
        assert "'smollm2:135m' can't see images" in message and "o/Smol-GGUF:Q4_1" in message
        assert hearth.loaded is None  # refused before any load
        assert hearth.images.from_base64(B64).data == PNG  # the same checks, for the window
    finally:
        hearth.close()


def test_a_large_image_is_decoded_in_slices_off_the_event_loop() -> None:
    """A big payload decodes to the same bytes in slices (other threads get turns between
    them), on a worker thread, while the loop keeps ticking; bad padding inside is refused."""
    data = png(8, 8) + bytes(range(256)) * (12 << 12)  # ~3 MiB: a PNG head, then filler
    encoded = base64.b64encode(data).decode()
    limits = ImageSettings()
    assert len(encoded) > intake.OFF_LOOP_CHARS and len(encoded) > intake._B64_SLICE

    async def decode_while_ticking() -> tuple[ImageInput, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        image = await intake.image_from_base64_off_loop(encoded, "The image", limits)
        ticker.cancel()
        return image, ticks

    image, ticks = asyncio.run(decode_while_ticking())
    assert image.data == data and image.media_type == "image/png"
    assert ticks > 1  # the loop ran while the image was decoded
    broken = encoded[:intake._B64_SLICE - 4] + "AA==" + encoded[intake._B64_SLICE:]
    with pytest.raises(ImageRejected, match="not valid base64"):
        intake.image_from_base64(broken, "The image", limits)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(
    lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    st.from_regex(r"data:[a-z/+.;=-]{0,40},[A-Za-z0-9+/=\s]{0,80}", fullmatch=True)))
def test_any_image_text_is_an_image_or_a_sentence(text: str) -> None:
    """Whatever a client sends as an image (data URL or bare base64), the intake answers with
    an image or ImageRejected, never another exception that would fail the request badly."""
    limits = ImageSettings()
    for read in (lambda: asyncio.run(intake.image_from_url(text, "The image", limits)),
                 lambda: intake.image_from_base64(text, "The image", limits)):
        try:
            assert isinstance(read(), ImageInput)
        except ImageRejected as exc:
            assert exc.user_message.endswith((".", ")"))
