"""An attacker's pass: what a hostile web page or local client tries beyond the other security
tests, against the real `hearth serve` (SmolLM2).

Each case here was a hole once: a Host header cut to something that looked allowed
(``[::1]evil.example``), a repeated Origin/Referer/Content-Type where only the last copy was
checked, a cross-site request that hid both Origin and Referer (``referrerpolicy=no-referrer``)
yet still reached the routes, a UTF-8 byte order mark refused as "not JSON", preset names that
are Windows device names (``con.json`` opens the console), and presets saved with values
(an infinite temperature, a hundred stop strings) that every later request then refused.
The last test is fairness: clients that never read their stream, or hang up mid-stream, must
not cut or stall anyone else's.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from backend.server.security import _host_without_port
from tests.server.conftest import MODEL, HearthServer

pytestmark = pytest.mark.slow

CHAT = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}


def call(server: HearthServer, method: str, path: str, *,
         headers: list[tuple[str, str]] | dict[str, str] | None = None,
         body: bytes | None = None) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers=headers, content=body,
                         timeout=120)


def error_text(r: httpx.Response) -> str:
    error = r.json()["error"]
    return error if isinstance(error, str) else error["message"]


def preset_files(server: HearthServer) -> set[str]:
    return {p.name for p in server.home.rglob("presets/*.json")}


# -- Host ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "host"), [
    ("localhost", "localhost"), ("LOCALHOST:80", "localhost"), ("[::1]:8080", "::1"),
    ("::1", "::1"), ("", ""), ("[::1]evil.example", None), ("[::1]evil.example:80", None),
    ("localhost:abc", None), ("localhost:80:80", None), ("[::1", None)])
def test_host_header_parsing_is_strict(value: str, host: str | None) -> None:
    assert _host_without_port(value) == host


@pytest.mark.parametrize("host", ["[::1]evil.example", "localhost:abc", "[::1]x:1"])
def test_malformed_hosts_are_refused(hearth_server: HearthServer, host: str) -> None:
    # Once cut to "::1" / "localhost" and let through.
    r = call(hearth_server, "GET", "/api/tags", headers={"Host": host})
    assert r.status_code == 403, r.text
    assert "is not allowed" in error_text(r)


# -- headers a check reads must come once --------------------------------------------------------
@pytest.mark.parametrize(("headers", "name"), [
    ([("Origin", "https://evil.example"), ("Origin", "http://localhost:3000")], "origin"),
    ([("Referer", "https://evil.example/"), ("Referer", "http://localhost/")], "referer"),
    ([("Content-Type", "text/plain"), ("Content-Type", "application/json")], "content-type"),
    ([("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "none")], "sec-fetch-site")],
    ids=["origin", "referer", "content-type", "sec-fetch-site"])
def test_repeated_security_headers_are_refused(hearth_server: HearthServer,
                                              headers: list[tuple[str, str]],
                                              name: str) -> None:
    # Only the last copy was checked: evil first, an allowed value last, passed.
    before = preset_files(hearth_server)
    body = json.dumps({"model": "forged", "from": MODEL}).encode()
    r = call(hearth_server, "POST", "/api/create", headers=headers, body=body)
    assert r.status_code == 400, r.text
    assert f"more than one '{name}'" in error_text(r)
    assert preset_files(hearth_server) == before


# -- a cross-site page that hides where it is ----------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/tags"), ("GET", "/health"),
                                              ("GET", "/v1/models"), ("POST", "/api/show")])
def test_cross_site_requests_without_origin_are_refused(hearth_server: HearthServer,
                                                        method: str, path: str) -> None:
    """``<img src>`` or a no-cors fetch with ``referrerpolicy="no-referrer"`` sends neither
    Origin nor Referer; the browser's own Sec-Fetch-Site still says another site asked."""
    headers = {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
    body = b'{"model": "smollm2:135m"}' if method == "POST" else None
    r = call(hearth_server, method, path, headers=headers, body=body)
    assert r.status_code == 403, r.text
    assert "refused" in error_text(r) and "--cors" in error_text(r)


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:3000"},
    {"Sec-Fetch-Site": "cross-site", "Referer": "http://127.0.0.1:8080/app"}])
def test_typed_urls_and_allowed_pages_still_work(hearth_server: HearthServer,
                                                 headers: dict[str, str]) -> None:
    assert call(hearth_server, "GET", "/api/tags", headers=headers).status_code == 200


# -- bodies -------------------------------------------------------------------------------------
def test_a_utf8_byte_order_mark_is_not_an_error(hearth_server: HearthServer) -> None:
    """PowerShell 5 and Notepad write one; RFC 8259 lets a parser ignore it."""
    json_type = {"Content-Type": "application/json"}
    r = call(hearth_server, "POST", "/api/show", headers=json_type,
             body=b'\xef\xbb\xbf{"model": "smollm2:135m"}')
    assert r.status_code == 200, r.text
    chat = call(hearth_server, "POST", "/v1/chat/completions", headers=json_type,
                body=b"\xef\xbb\xbf" + json.dumps(CHAT).encode())
    assert chat.status_code == 200, chat.text


# -- presets made through /api/create ------------------------------------------------------------
def create(server: HearthServer, body: dict[str, Any] | bytes) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps({"stream": False, **body}).encode()
    return call(server, "POST", "/api/create", headers={"Content-Type": "application/json"},
                body=raw)


@pytest.mark.parametrize("name", ["con", "NUL", "aux.gguf", "lpt9", "com1.x"])
def test_windows_device_names_are_no_preset_names(hearth_server: HearthServer,
                                                  name: str) -> None:
    before = preset_files(hearth_server)
    r = create(hearth_server, {"model": name, "from": MODEL})
    assert r.status_code == 400, r.text
    assert "Windows" in error_text(r) and "Pick another name" in error_text(r)
    assert preset_files(hearth_server) == before


BAD_PARAMETERS = [
    b'{"model": "p-inf", "from": "smollm2:135m", "parameters": {"temperature": Infinity},'
    b' "stream": false}',
    b'{"model": "p-nan", "from": "smollm2:135m", "parameters": {"top_p": NaN},'
    b' "stream": false}',
    {"model": "p-ctx", "from": MODEL, "parameters": {"num_ctx": 2**80}},
    {"model": "p-topk", "from": MODEL, "parameters": {"top_k": 2**40}},
    {"model": "p-seed", "from": MODEL, "parameters": {"seed": 2**70}},
    {"model": "p-stops", "modelfile": f"FROM {MODEL}\n" + "PARAMETER stop x\n" * 100},
    {"model": "p-temp", "modelfile": f"FROM {MODEL}\nPARAMETER temperature 1e9"},
]


@pytest.mark.parametrize("body", BAD_PARAMETERS, ids=lambda b: str(b)[:40])
def test_presets_no_request_could_use_are_not_saved(hearth_server: HearthServer,
                                                    body: dict[str, Any] | bytes) -> None:
    """Once saved (temperature as the non-JSON word Infinity), then refused on every use."""
    before = preset_files(hearth_server)
    r = create(hearth_server, body)
    assert r.status_code == 400, r.text
    assert "was not saved" in error_text(r)
    assert preset_files(hearth_server) == before


def test_ollamas_special_values_still_make_a_preset(hearth_server: HearthServer) -> None:
    modelfile = (f"FROM {MODEL}\nPARAMETER seed -1\nPARAMETER num_predict -1\n"
                 "PARAMETER temperature 0.5\nPARAMETER stop <|im_end|>")
    assert create(hearth_server, {"model": "attacker-ok", "modelfile": modelfile}).json() == \
        {"status": "success"}
    try:
        r = call(hearth_server, "POST", "/v1/chat/completions",
                 headers={"Content-Type": "application/json"},
                 body=json.dumps({**CHAT, "model": "attacker-ok"}).encode())
        assert r.status_code == 200, r.text
    finally:
        call(hearth_server, "DELETE", "/api/delete", headers={"Content-Type": "application/json"},
             body=b'{"model": "attacker-ok"}')


# -- fairness -----------------------------------------------------------------------------------
def open_stream(server: HearthServer, max_tokens: int, model: str = MODEL) -> socket.socket:
    """A raw streaming request whose client never reads a byte of the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    body = json.dumps({**CHAT, "stream": True, "max_tokens": max_tokens, "temperature": 1.5,
                       "model": model,
                       "messages": [{"role": "user", "content": "Write a long story."}]})
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 f"{body}".encode())
    return sock


def test_stalled_and_vanishing_clients_harm_no_other_stream(hearth_server: HearthServer) -> None:
    stalled = [open_stream(hearth_server, 300) for _ in range(2)]
    vanishing = open_stream(hearth_server, 300)
    time.sleep(0.5)
    vanishing.close()  # hangs up before reading anything
    try:
        body = {**CHAT, "stream": True, "max_tokens": 24, "temperature": 0,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "Count from 1 to 100."}]}
        tokens, done = 0, False
        with httpx.stream("POST", f"{hearth_server.url}/v1/chat/completions", json=body,
                          timeout=120) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and json.loads(line[6:]).get("usage"):
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
        assert (r.status_code, tokens, done) == (200, 24, True)
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 60
    while hearth_server.health()["queue"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hearth_server.health()["queue"]["in_flight"] == 0


def test_a_client_that_never_reads_gives_its_place_back(hearth_server: HearthServer) -> None:
    """A stream whose client stays connected but stopped reading once kept its model lease
    and queue place for as long as the socket stayed open: enough such sockets and every
    other client got "server busy" forever. Now the server drops it once a piece has waited
    STALLED_CLIENT_S for the client. The preset name padded with spaces (names are trimmed)
    is echoed in every chunk, so a few hundred tokens fill the socket buffers."""
    from backend.server.streaming import STALLED_CLIENT_S

    assert create(hearth_server, {"model": "stall-pad", "from": MODEL}).status_code == 200
    try:
        sock = open_stream(hearth_server, 400, model="stall-pad" + " " * 20_000)
        try:
            time.sleep(2)
            assert hearth_server.health()["queue"]["in_flight"] == 1
            deadline = time.monotonic() + STALLED_CLIENT_S + 30
            while hearth_server.health()["queue"]["in_flight"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert hearth_server.health()["queue"]["in_flight"] == 0
            assert "its stream was ended" in hearth_server.log()
        finally:
            sock.close()
    finally:
        call(hearth_server, "DELETE", "/api/delete", headers={"Content-Type": "application/json"},
             body=b'{"model": "stall-pad"}')


def test_the_request_log_keeps_no_megabyte_model_names() -> None:
    """The name a body gives reached every reader of the request log (the Server page)
    whole, however long."""
    import asyncio

    from backend.api import Hearth, RequestLogEntry, ServerSettings, Settings, SettingsStore
    from backend.server.app import create_app

    hearth = Hearth(SettingsStore.in_memory(Settings(server=ServerSettings(port=0))))
    log: list[RequestLogEntry] = []
    hearth.request_log.listen(log.append)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(hearth))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.post("/api/show", json={"model": "x" * 1_000_000})

    try:
        assert asyncio.run(run()).status_code == 404
    finally:
        hearth.close()
    assert log and log[0].model is not None and len(log[0].model) <= 201


def test_websockets_are_refused_before_any_route() -> None:
    """No route speaks WebSocket, and browsers open one to any origin without a preflight:
    the middleware closes it without handing it on (so a later route can't skip the checks)."""
    import asyncio

    from backend.server.security import SecurityMiddleware

    reached: list[str] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = SecurityMiddleware(app, bound_host="127.0.0.1", api_key=None,
                                    extra_origins=(), max_body_bytes=1 << 20)
    scope = {"type": "websocket", "path": "/v1/chat/completions",
             "headers": [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]}
    asyncio.run(middleware(scope, receive, send))
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]
