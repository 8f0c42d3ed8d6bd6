"""No browser-forged requests: every route and method refuses a request a web page made.

A page on any origin can make the browser send a "simple" cross-origin request (a form post,
``fetch`` with ``text/plain``) without a preflight, and it carries the user's loopback access
with it. So a request naming a foreign origin (``Origin``, else ``Referer``) is refused on
every route, whatever its method, and a body must be declared JSON (415 otherwise), which a
page can only do after a preflight that is refused too. Checked against a real server with no
API key (the default), for every route the server has, and for side effects: a forged pull or
create leaves the library as it was.
"""

from __future__ import annotations

import httpx
import pytest

from tests.server.conftest import MODEL, HearthServer

pytestmark = pytest.mark.slow

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
EVIL = "https://evil.example"
FORGED_BODY = b'{"model": "x", "name": "x", "from": "smollm2:135m"}'
# What a page can send without a preflight: form posts and text/plain fetches.
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


def every_route(server: HearthServer) -> list[str]:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    paths = [p.replace("{model_id}", MODEL) for p in spec["paths"]]
    return sorted({*paths, "/docs", "/openapi.json", "/no/such/route"})


def request(server: HearthServer, method: str, path: str, headers: dict[str, str],
            body: bytes | None = FORGED_BODY) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=60,
                         content=body if method not in ("GET", "HEAD") else None)


@pytest.mark.parametrize("page", [
    {"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://localhost.evil.example"},
    {"Referer": f"{EVIL}/attack.html"}, {"Referer": "file:///home/me/attack.html"},
    {"Origin": EVIL, "Referer": "http://localhost:3000/"}],
    ids=["origin", "null-origin", "lookalike-origin", "referer-only", "file-referer",
         "origin-wins-over-referer"])
def test_every_route_and_method_refuses_a_foreign_page(hearth_server: HearthServer,
                                                      page: dict[str, str]) -> None:
    routes = every_route(hearth_server)
    assert len(routes) > 15
    for path in routes:
        for method in METHODS:
            for content_type in SIMPLE_TYPES:
                r = request(hearth_server, method, path, {**page, "Content-Type": content_type})
                assert r.status_code == 403, (method, path, page, r.status_code, r.text)
                assert "access-control-allow-origin" not in r.headers
                if method != "HEAD":
                    shape = r.json()["error"]
                    text = shape if path.startswith("/api/") else shape["message"]
                    assert "refused" in text and "--cors" in text


def test_every_body_must_be_declared_json(hearth_server: HearthServer) -> None:
    """No web origin at all (a page can hide its Referer): a body in a form or text/plain
    shape is still refused, on every route that takes a body, before any route code runs."""
    for path in every_route(hearth_server):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for content_type in (*SIMPLE_TYPES, None):
                headers = {"Content-Type": content_type} if content_type else {}
                r = request(hearth_server, method, path, headers)
                assert r.status_code == 415, (method, path, content_type, r.text)
                assert "application/json" in r.text


def test_forged_requests_change_nothing(hearth_server: HearthServer) -> None:
    url = hearth_server.url
    before = httpx.get(f"{url}/api/tags", timeout=30).json()
    forged = [("/api/create", b'{"model": "forged", "from": "smollm2:135m", "system": "x"}'),
              ("/api/pull", b'{"model": "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"}'),
              ("/api/delete", b'{"model": "smollm2:135m"}')]
    for path, body in forged:
        method = "DELETE" if path == "/api/delete" else "POST"
        for headers in ({"Origin": EVIL, "Content-Type": "text/plain"},
                        {"Content-Type": "text/plain"},
                        {"Origin": EVIL, "Content-Type": "application/json"}):
            assert request(hearth_server, method, path, headers, body).status_code in (403, 415)
    assert httpx.get(f"{url}/api/tags", timeout=30).json() == before
    assert not (hearth_server.home / "config").exists() or not list(
        (hearth_server.home).rglob("forged*.json"))
    assert not list(hearth_server.home.rglob("*.part"))


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080",
                                    "vscode-webview://abc", "app://hearth"])
def test_local_pages_and_apps_still_work(hearth_server: HearthServer, origin: str) -> None:
    tags = httpx.get(f"{hearth_server.url}/api/tags", headers={"Origin": origin}, timeout=30)
    assert tags.status_code == 200
    assert tags.headers["access-control-allow-origin"] == origin
    chat = httpx.post(f"{hearth_server.url}/v1/chat/completions", timeout=120,
                      headers={"Origin": origin, "Referer": f"{origin}/chat"},
                      json={"model": MODEL, "max_tokens": 2,
                            "messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 200, chat.text


def test_clients_that_are_not_browsers_are_unaffected(hearth_server: HearthServer) -> None:
    """SDKs and curl send no Origin and declare JSON: nothing changes for them."""
    r = httpx.post(f"{hearth_server.url}/api/generate", timeout=120, json={
        "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["done"]
    with_charset = httpx.post(
        f"{hearth_server.url}/api/show", timeout=60, content=b'{"model": "smollm2:135m"}',
        headers={"Content-Type": "application/json; charset=utf-8"})
    assert with_charset.status_code == 200
