"""Safe by default, proven with raw HTTP against real `hearth serve` processes.

Bind address, refusing to expose the port without a key, API keys (OpenAI- and Ollama-shaped
401s), the Host allow-list against DNS rebinding, the CORS allow-list, body limits (sized and
chunked), malformed JSON, and a port already in use.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.server.conftest import (
    HearthServer,
    free_port,
    hearth_command,
    start_hearth_server,
)

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"
BODY_LIMIT = 4096
USER_ORIGIN = "https://my.app"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    """Reachable from other machines (0.0.0.0), so a key is required; no model is loaded:
    none of these tests generates text."""
    server = start_hearth_server(
        tmp_path_factory.mktemp("keyed"), "--host", "0.0.0.0", "--api-key", KEY,
        "--cors", USER_ORIGIN, model=None, settings={"server": {"max_body_bytes": BODY_LIMIT}})
    yield server
    server.stop()


def get(server: HearthServer, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kw)


def auth(key: str = KEY) -> dict[str, Any]:
    return {"Authorization": f"Bearer {key}"}


# -- binding --------------------------------------------------------------------------------
def test_binds_loopback_by_default(hearth_server: HearthServer) -> None:
    listening = [c.laddr for c in psutil.Process(hearth_server.proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", hearth_server.port)]
    assert f"listening on http://127.0.0.1:{hearth_server.port}" in hearth_server.log()


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hearth_command("serve", *args), capture_output=True, text=True,
                          timeout=120)


def test_refuses_to_expose_the_port_without_a_key() -> None:
    result = run_serve("--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode != 0
    assert "without an API key" in result.stderr and "--api-key" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_sentence_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port))
    assert result.returncode != 0
    assert f"Port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


# -- API key --------------------------------------------------------------------------------
def test_health_is_public(keyed_server: HearthServer) -> None:
    assert get(keyed_server, "/health").json()["status"] == "ok"
    # The liveness line Ollama clients probe for.
    root = get(keyed_server, "/")
    assert root.status_code == 200 and root.text == "Hearth is running"


def test_every_other_route_needs_the_key(keyed_server: HearthServer) -> None:
    spec = get(keyed_server, "/openapi.json", headers=auth()).json()
    routes = [(method.upper(), path.replace("{", "").replace("}", ""))
              for path, ops in spec["paths"].items() for method in ops
              if path not in ("/health", "/")]
    routes += [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]
    assert len(routes) > 6
    for method, path in routes:
        # Non-ASCII bytes in the header once made hmac.compare_digest raise: a 500, not a 401.
        for headers in ({}, auth("wrong"), {"Authorization": KEY},
                        {"Authorization": "Bearer ключ".encode()}):
            r = httpx.request(method, f"{keyed_server.url}{path}", headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


def test_401_bodies_are_shaped_for_each_api(keyed_server: HearthServer) -> None:
    openai_shaped = get(keyed_server, "/v1/models", headers=auth("wrong")).json()
    assert openai_shaped["error"]["type"] == "authentication_error"
    assert "Authorization: Bearer" in openai_shaped["error"]["message"]
    ollama_shaped = get(keyed_server, "/api/version", headers=auth("wrong")).json()
    assert isinstance(ollama_shaped["error"], str) and "API key" in ollama_shaped["error"]


def test_the_right_key_opens_both_apis(keyed_server: HearthServer) -> None:
    assert get(keyed_server, "/v1/models", headers=auth()).json()["object"] == "list"
    assert get(keyed_server, "/api/version", headers=auth()).status_code == 200
    lowercase = {"authorization": f"bearer {KEY}"}
    assert get(keyed_server, "/v1/models", headers=lowercase).status_code == 200


# -- Host allow-list (DNS rebinding) --------------------------------------------------------
@pytest.mark.parametrize(("host", "status"), [
    ("localhost", 200), ("localhost:1234", 200), ("127.0.0.1:80", 200), ("[::1]:8080", 200),
    ("LOCALHOST", 200), ("evil.example", 403), ("evil.example:11435", 403),
    ("localhost.evil.example", 403), ("10.1.2.3", 403), ("", 403)])
def test_host_allow_list_on_loopback(hearth_server: HearthServer, host: str,
                                     status: int) -> None:
    r = get(hearth_server, "/health", headers={"Host": host})
    assert r.status_code == status, r.text
    if status == 403:
        assert "is not allowed" in r.json()["error"]["message"]


@pytest.mark.parametrize(("host", "status"), [
    ("10.1.2.3:8080", 200), ("[fe80::1]", 200), ("127.0.0.1", 200), ("evil.example", 403)])
def test_host_allow_list_when_bound_to_all(keyed_server: HearthServer, host: str,
                                           status: int) -> None:
    # Any literal address may reach a server bound to 0.0.0.0; a DNS name may not.
    assert get(keyed_server, "/health", headers={"Host": host}).status_code == status


# -- CORS -----------------------------------------------------------------------------------
ALLOWED = ["http://localhost:3000", "http://127.0.0.1:8080", "app://x", "vscode-webview://x",
           USER_ORIGIN]
REFUSED = ["http://evil.example", "http://localhost.evil.example", "https://my.app.evil",
           "null", "http://localhost:3000.evil.example"]


@pytest.mark.parametrize("origin", ALLOWED + REFUSED)
def test_cors(keyed_server: HearthServer, origin: str) -> None:
    allowed = origin in ALLOWED
    simple = get(keyed_server, "/v1/models", headers={**auth(), "Origin": origin})
    assert simple.status_code == (200 if allowed else 403)  # refused, not merely unreadable
    assert simple.headers.get("access-control-allow-origin") == (origin if allowed else None)
    preflight = httpx.options(f"{keyed_server.url}/v1/chat/completions", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.headers.get("access-control-allow-origin") == (
        origin if allowed else None)
    if allowed:  # a preflight carries no key, and must not need one
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"]
    else:
        assert preflight.status_code >= 400


# -- request bodies -------------------------------------------------------------------------
def post(server: HearthServer, path: str, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=60,
                      headers={**auth(), "Content-Type": "application/json"}, **kw)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_bodies_over_the_limit_are_413(keyed_server: HearthServer, path: str) -> None:
    big = b'{"model": "' + b"a" * BODY_LIMIT + b'"}'
    sized = post(keyed_server, path, content=big)
    assert sized.status_code == 413 and "limit" in sized.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 512):
            yield big[i:i + 512]

    chunked = post(keyed_server, path, content=chunks())
    assert chunked.status_code == 413 and "limit" in chunked.text
    assert "Traceback" not in chunked.text


MALFORMED = [b"{bad", b'{"model": "x", "messages": [', b'{"model":', b"\xff\xfe",
             b'{"model": "\xff\xfe"}', b"", b"[1, 2]", b'{"model": 3, "messages": "hi"}',
             b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}',
             b"[" * 2000 + b"]" * 2000, b'"just a string"', b"null", b"NaN"]
BODY_ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
               ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/show"),
               ("POST", "/api/pull"), ("POST", "/api/create"), ("DELETE", "/api/delete")]


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=lambda x: x)
def test_malformed_bodies_are_clear_400s(keyed_server: HearthServer, method: str, path: str,
                                         body: bytes) -> None:
    """Every JSON route, every kind of broken body: a 400 with a sentence, in the API's own
    error shape (the Ollama routes once answered 500 with an IndexError from the mapper)."""
    r = httpx.request(method, f"{keyed_server.url}{path}", content=body, timeout=60,
                      headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert message.startswith("The request"), message
    assert "Traceback" not in message and "File \"" not in message
