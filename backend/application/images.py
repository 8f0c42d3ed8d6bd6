"""Images for requests, from what front ends are given: data URLs, base64, files, http(s) URLs.

Every front end turns what it was sent into ``ImageInput`` values here, so the OpenAI routes
(``image_url`` parts), the Ollama routes (``images``: base64), ``hearth run --image`` and the
window refuse the same inputs with the same sentences (``ImageRejected``, a 400):
  * only PNG, JPEG, WebP and GIF, judged by the bytes (an SVG, HTML or anything else is
    refused, whatever type it was declared as);
  * at most ``settings.images.max_image_bytes`` per image, checked on the encoded length
    before anything is decoded, and ``max_images`` per request (``check_images``, run by the
    one request builder);
  * ``http(s)`` URLs are fetched only when the user allowed it (``images.allow_remote_urls``,
    off by default): the server must not become a way to reach other hosts. Even then every
    address the name resolves to must be a public one (no loopback, private, link-local,
    multicast or reserved address), the connection goes to the address that was checked (a
    name can't re-resolve to a private one in between), redirects are checked the same way,
    and size, time and content type are limited. Any other scheme (``file:``, ``ftp:``…) is
    refused.

Threading: the functions are pure or blocking-free, except ``fetch_image`` (async, on the
caller's loop; the name lookup runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from backend.engine.types import ChatMessage, ImageInput
from backend.errors import ImageRejected
from backend.settings import ImageSettings
from backend.store.images import sniff_media_type

if TYPE_CHECKING:
    import httpx

KINDS = "PNG, JPEG, WebP or GIF"
_DECLARED = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif"}
_MAX_REDIRECTS = 3
_ALLOW_HINT = ("send the image inline instead (a data URL such as data:image/png;base64,…, "
               "or base64 in Ollama's 'images'), or allow remote image URLs in Hearth's "
               "settings (\"images\": {\"allow_remote_urls\": true})")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def _too_big(where: str, limits: ImageSettings) -> ImageRejected:
    return ImageRejected(f"{where} is larger than {_mib(limits.max_image_bytes)}, the most "
                         "Hearth accepts for one image. Send a smaller or more compressed one.")


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in head


def checked_image(data: bytes, where: str, limits: ImageSettings) -> ImageInput:
    """``data`` as an image, if it is one of the kinds a model takes and small enough."""
    if not data:
        raise ImageRejected(f"{where} is empty.")
    if len(data) > limits.max_image_bytes:
        raise _too_big(where, limits)
    media_type = sniff_media_type(data)
    if media_type is None:
        if _looks_like_svg(data):
            raise ImageRejected(f"{where} is an SVG drawing; models read {KINDS} images. "
                                "Convert it to PNG first.")
        raise ImageRejected(f"{where} isn't a {KINDS} image (its bytes are none of those).")
    return ImageInput(data, media_type)


def image_from_base64(text: str, where: str, limits: ImageSettings) -> ImageInput:
    """Base64 (Ollama's ``images``; a data URL's payload). Whitespace is allowed, nothing
    else that isn't base64."""
    # Copies of a 27 MB text cost milliseconds each: made only where there is whitespace.
    plain = text.isascii() and not any(c in text for c in _SPACES)
    compact = text if plain else "".join(text.split())
    if len(compact) // 4 * 3 > limits.max_image_bytes + 3:  # before decoding anything
        raise _too_big(where, limits)
    try:
        data = _decode_base64(compact)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ImageRejected(f"{where} is not valid base64. Send the image file's bytes "
                            "base64-encoded.") from None
    return checked_image(data, where, limits)


#: Base64 characters decoded per call: a 20 MB image is ~60 ms of C code holding the GIL in
#: one call, a slice ~3 ms, so other threads (the server's loop) get turns in between.
_B64_SLICE = 1 << 20
#: A payload this large is decoded on a worker thread, not the server's event loop.
OFF_LOOP_CHARS = 256 << 10


_SPACES = " \n\r\t\f\v\x1c\x1d\x1e\x1f"  # what str.split() splits ASCII text at


def _decode_base64(encoded: str) -> bytes:
    """Strict base64; ``encoded`` must be ASCII (else ValueError), without whitespace."""
    if len(encoded) <= _B64_SLICE:
        return binascii.a2b_base64(encoded, strict_mode=True)
    # Sliced, padding inside would end a slice cleanly: it may only close the whole text.
    if len(encoded) % 4 or "=" in encoded[:-2]:
        raise binascii.Error("base64 length is not a multiple of 4, or padding inside")
    return b"".join(binascii.a2b_base64(encoded[i:i + _B64_SLICE], strict_mode=True)
                    for i in range(0, len(encoded), _B64_SLICE))


async def image_from_base64_off_loop(text: str, where: str,
                                     limits: ImageSettings) -> ImageInput:
    """``image_from_base64`` for a server route: a large payload is decoded on a worker
    thread, so a big image never stalls the other requests' streams."""
    if len(text) <= OFF_LOOP_CHARS:
        return image_from_base64(text, where, limits)
    return await asyncio.to_thread(image_from_base64, text, where, limits)


def image_from_data_url(url: str, where: str, limits: ImageSettings) -> ImageInput:
    """``data:image/png;base64,…``; the declared type must be an image kind we take, and the
    bytes must agree."""
    head, comma, payload = url.partition(",")
    params = head[len("data:"):].lower().split(";")
    if not comma or "base64" not in params[1:]:
        raise ImageRejected(f"{where} is a data URL without base64 data; send "
                            "data:image/png;base64,… (or jpeg, webp, gif).")
    declared = params[0].strip()
    if declared == "image/svg+xml":
        raise ImageRejected(f"{where} is an SVG drawing; models read {KINDS} images. Convert "
                            "it to PNG first.")
    if declared and declared not in _DECLARED:
        raise ImageRejected(f"{where} is declared as '{declared[:40]}'; send a {KINDS} "
                            "image.")
    return image_from_base64(payload, where, limits)


def image_from_file(path: Path | str, limits: ImageSettings) -> ImageInput:
    """An image file on this machine (``hearth run --image``: the person named it)."""
    path = Path(path).expanduser()
    try:
        size = path.stat().st_size
        if size > limits.max_image_bytes:
            raise _too_big(f"The image {path.name}", limits)
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"Hearth can't read the image {path}: "
                            f"{exc.strerror or exc}.") from exc
    return checked_image(data, f"The image {path.name}", limits)


def check_images(messages: Sequence[ChatMessage] | None, limits: ImageSettings) -> None:
    """The per-request limits, for every front end: the request builder runs it."""
    images = [image for m in messages or () for image in m.images]
    if len(images) > limits.max_images:
        raise ImageRejected(f"The request carries {len(images)} images; Hearth takes at most "
                            f"{limits.max_images} in one request. Send fewer (or raise the "
                            "limit in the images settings).")
    for n, image in enumerate(images, 1):
        if len(image.data) > limits.max_image_bytes:
            raise _too_big(f"Image {n}", limits)


# --- image URLs -------------------------------------------------------------------------------


async def image_from_url(url: str, where: str, limits: ImageSettings) -> ImageInput:
    """An OpenAI ``image_url``: a data URL, or an http(s) URL when the settings allow it."""
    scheme = url[:16].split(":", 1)[0].lower() if ":" in url[:16] else ""
    if scheme == "data":
        if len(url) <= OFF_LOOP_CHARS:
            return image_from_data_url(url, where, limits)
        return await asyncio.to_thread(image_from_data_url, url, where, limits)
    if scheme not in ("http", "https"):
        shown = f"a {scheme}: URL" if scheme else "no URL Hearth can use"
        raise ImageRejected(f"{where} has {shown}; Hearth takes images as data URLs "
                            "(data:image/png;base64,…) or, when allowed in its settings, "
                            "http(s) URLs of public hosts.")
    if not limits.allow_remote_urls:
        raise ImageRejected(f"{where} is a remote URL, and Hearth doesn't fetch images from "
                            f"other hosts unless you allow it: {_ALLOW_HINT}.")
    try:
        return await asyncio.wait_for(_fetch(url, where, limits), limits.fetch_timeout_s)
    except TimeoutError:
        raise ImageRejected(f"Fetching {where.lower()} took longer than "
                            f"{limits.fetch_timeout_s:g} s; send the image inline.") from None


def is_public_address(address: str) -> bool:
    """Whether ``address`` is on the public internet (what a remote image may come from)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def _public_address(host: str, port: int, where: str) -> str:
    """The address to connect to: every address ``host`` resolves to must be public."""
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port,
                                        type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ImageRejected(f"{where}'s host '{host[:80]}' could not be found.") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise ImageRejected(f"{where} points at a local or private-network address; Hearth "
                            "only fetches images from public hosts.")
    return addresses[0]


async def _fetch(url: str, where: str, limits: ImageSettings) -> ImageInput:
    import httpx  # only when a remote image is allowed and sent

    async with httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                 timeout=limits.fetch_timeout_s) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ImageRejected(f"{where} redirected to a URL Hearth won't open.")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await _public_address(parts.hostname, port, where)
            shown = f"[{address}]" if ":" in address else address
            # Connect to the address checked above; the name still goes in Host and in TLS.
            target = parts._replace(netloc=f"{shown}:{port}").geturl()
            request = client.build_request(
                "GET", target, headers={"Host": parts.netloc.rsplit("@", 1)[-1],
                                        "Accept": "image/png, image/jpeg, image/webp, "
                                        "image/gif"},
                extensions={"sni_hostname": parts.hostname})
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise ImageRejected(f"{where} could not be fetched "
                                    f"({type(exc).__name__}).") from None
            async with contextlib.aclosing(response):
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                return await _read_image(response, where, limits)
    raise ImageRejected(f"{where} redirected more than {_MAX_REDIRECTS} times.")


async def _read_image(response: httpx.Response, where: str, limits: ImageSettings
                      ) -> ImageInput:
    status = response.status_code
    if status != 200:
        raise ImageRejected(f"{where} could not be fetched: the server answered HTTP {status}.")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _DECLARED:
        raise ImageRejected(f"{where} is served as '{kind[:40] or 'no type'}', not a {KINDS} "
                            "image.")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_image_bytes:
        raise _too_big(where, limits)
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limits.max_image_bytes:
            raise _too_big(where, limits)
    return checked_image(bytes(data), where, limits)


class ImageIntake:
    """``Hearth.images``: the functions above with the user's image settings, read at each
    call (a change in the settings applies to the next image)."""

    def __init__(self, limits: Callable[[], ImageSettings]) -> None:
        self._limits = limits

    def from_base64(self, text: str, where: str = "The image") -> ImageInput:
        return image_from_base64(text, where, self._limits())

    async def from_base64_off_loop(self, text: str, where: str = "The image") -> ImageInput:
        """``from_base64`` for server routes: a large payload decoded on a worker thread."""
        return await image_from_base64_off_loop(text, where, self._limits())

    def from_file(self, path: Path | str) -> ImageInput:
        """Blocking (reads the file)."""
        return image_from_file(path, self._limits())

    def from_bytes(self, data: bytes, where: str = "The image") -> ImageInput:
        return checked_image(data, where, self._limits())

    async def from_url(self, url: str, where: str = "The image") -> ImageInput:
        """A data URL, or an http(s) URL when the settings allow fetching one."""
        return await image_from_url(url, where, self._limits())
