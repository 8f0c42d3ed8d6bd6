"""Safe by default: Host allow-list (DNS rebinding), browser origins, API key, JSON-only
bodies, body limit.

One pure-ASGI middleware so every check runs before any route code, streaming included.

Web pages are the threat a local server forgets: any page the user visits can send "simple"
cross-origin requests (a form post, ``fetch`` with ``text/plain``) that browsers send without
asking first. So a request that names a web origin (``Origin``, or failing that ``Referer``)
outside the allow-list is refused on every route and method, whether or not the browser sent a
preflight (a browser's ``Sec-Fetch-Site: cross-site`` with neither header counts as a foreign
page that hid its address); and a body must be declared JSON, which a page can only do after
a preflight this middleware refuses. Clients that are not browsers (SDKs, curl) send neither header.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from backend.api import LOOPBACK_HOSTS
from backend.server.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Browser origins allowed by default: pages served from this machine and editor webviews.
_DEFAULT_ORIGIN = re.compile(
    r"^(https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?|app://.*|vscode-webview://.*)$")
PUBLIC_PATHS = frozenset({"/", "/health"})  # liveness only: nothing private
# Methods whose requests change state or spend compute: their bodies must be JSON.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# A Host header: a bracketed IPv6 address or a name/IPv4 address, then at most ":port".
# Anything else ("[::1]evil.example", "localhost:abc") is no host a browser sends, and is
# refused rather than cut to something that looks allowed.
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]*))(?::\d{1,5})?$")
# Headers the checks below read: a request that repeats one is refused, since each check
# must see the one value the browser (or client) meant, not whichever copy came last.
_SINGLE_HEADERS = ("host", "origin", "referer", "content-type", "sec-fetch-site",
                   "authorization", "content-length")


def _host_without_port(value: str) -> str | None:
    """The host of a Host header, lower-cased; None when it is malformed."""
    value = value.strip().lower()
    match = _HOST.match(value)
    if match is None:  # a bare IPv6 address ("::1"), which some clients send unbracketed
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return value
    return match["v6"] or match["name"] or ""


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, bound_host: str, api_key: str | None,
                 extra_origins: Iterable[str], max_body_bytes: int) -> None:
        self.app = app
        self.allowed_hosts = {*LOOPBACK_HOSTS, _host_without_port(bound_host) or bound_host}
        self.api_key = api_key or None
        self.extra_origins = {o.rstrip("/") for o in extra_origins}
        self.max_body = max_body_bytes

    def origin_allowed(self, origin: str) -> bool:
        # "*" among the user's origins lets every page in, as with OLLAMA_ORIGINS=*.
        return origin.rstrip("/") in self.extra_origins or "*" in self.extra_origins \
            or bool(_DEFAULT_ORIGIN.match(origin))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Hearth serves no WebSocket route, and browsers open WebSockets to any origin
            # without a preflight: refused here, so a route added later can't be reached
            # around the checks below.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        raw_headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                       for k, v in scope.get("headers", [])]
        headers = dict(raw_headers)
        path: str = scope.get("path", "")
        names = [k for k, _ in raw_headers]
        repeated = next((h for h in _SINGLE_HEADERS if names.count(h) > 1), None)
        if repeated is not None:
            await _reject(send, path, 400, f"The request has more than one '{repeated}' "
                          "header; send it once.")
            return
        given = headers.get("host", "")
        host = _host_without_port(given)
        if host is None or (host not in self.allowed_hosts
                            and not self._bound_to_all_and_ip(host)):
            shown = (host if host is not None else given.strip())[:200]
            await _reject(send, path, 403, f"Host '{shown}' is not allowed. Use localhost or "
                          "the address the server is bound to.")
            return
        origin = headers.get("origin")
        cors_ok = origin is not None and self.origin_allowed(origin)
        if scope["method"] == "OPTIONS" and origin is not None \
                and "access-control-request-method" in headers:
            await self._preflight(send, origin, cors_ok, headers)
            return
        page = origin if origin is not None else _origin_of_referer(headers.get("referer"))
        if page is None and headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            # A browser made this request for a page on another site that hid its address
            # (an <img> or no-cors fetch with referrerpolicy="no-referrer" sends neither
            # Origin nor Referer), and browsers set Sec-Fetch-Site themselves: a page can't.
            page = "another site"
        if page is not None and not self.origin_allowed(page):
            await _reject(send, path, 403, f"Requests from web pages on {page[:200]} are "
                          "refused. To let a web app use Hearth, add its origin to the "
                          "server's CORS origins (hearth serve --cors ORIGIN).")
            return
        if self.api_key and path not in PUBLIC_PATHS and not self._authorized(headers):
            await _reject(send, path, 401, "A valid API key is required: send it as "
                          "'Authorization: Bearer <key>'.", cors_origin=origin if cors_ok
                          else None)
            return
        if scope["method"] in BODY_METHODS and not _is_json(headers.get("content-type")):
            await _reject(send, path, 415, "Send the request body as JSON, with the header "
                          "'Content-Type: application/json' (curl: -H 'Content-Type: "
                          "application/json'). Other content types are refused so that web "
                          "pages can't send requests to Hearth.",
                          cors_origin=origin if cors_ok else None)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _reject(send, path, 413, self._too_large())
            return
        receive = self._limited(receive)

        async def send_with_cors(message: Message) -> None:
            if cors_ok and message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"access-control-allow-origin", origin.encode()),
                                      (b"vary", b"Origin")]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except _BodyTooLarge:
            await _reject(send, path, 413, self._too_large())

    def _too_large(self) -> str:
        return (f"The request body is larger than the {self.max_body:,}-byte limit. Send "
                "less (smaller or fewer images), or raise server.max_body_bytes in Hearth's "
                "settings.")

    def _bound_to_all_and_ip(self, host: str) -> bool:
        # Bound to 0.0.0.0/:: (an API key is then mandatory): accept any literal IP address,
        # but never an arbitrary DNS name, which is what a rebinding attack uses.
        if not ({"0.0.0.0", "::"} & self.allowed_hosts):
            return False
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    def _authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        assert self.api_key is not None
        # Compare bytes: compare_digest raises TypeError on non-ASCII str, which would turn a
        # junk header into a 500. Headers were decoded as latin-1, so this is lossless.
        given = token.strip().encode("latin-1")
        return scheme.lower() == "bearer" and hmac.compare_digest(given,
                                                                  self.api_key.encode())

    async def _preflight(self, send: Send, origin: str, ok: bool,
                         headers: dict[str, str]) -> None:
        if not ok:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        allow_headers = headers.get("access-control-request-headers",
                                    "authorization, content-type")
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allow_headers.encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]})
        await send({"type": "http.response.body", "body": b""})

    def _limited(self, receive: Receive) -> Receive:
        """Counts chunked bodies too, which carry no Content-Length."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge(self.max_body)
            return message

        return wrapped


def _origin_of_referer(referer: str | None) -> str | None:
    """The origin (scheme://host[:port]) of a Referer header; "null" when it has none."""
    if referer is None:
        return None
    try:
        parts = urllib.parse.urlsplit(referer.strip())
    except ValueError:
        return "null"
    if not parts.scheme or not parts.netloc:
        return "null"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, with any parameters."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


class _BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parser re-raises it as a 413 (it turns any other
    exception met while reading the body into a vague 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {limit:,}-byte limit.")


async def _reject(send: Send, path: str, status: int, message: str,
                  cors_origin: str | None = None) -> None:
    body = json.dumps(error_body(path, status, message)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if cors_origin:
        headers.append((b"access-control-allow-origin", cors_origin.encode()))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
