"""Images attached to chat messages, kept as files in the data folder, named by their content.

Each image is stored once, at ``<data>/images/<2 hex>/<sha256>.<ext>``: the same picture in
ten chats is one file, and a name is derived only from the bytes' hash and a fixed list of
extensions, so nothing a message row says can name a file outside that folder. A file is
written to a temporary name beside it and moved into place (``os.replace``), so a crash never
leaves half an image under its final name.

The history (``history.py``) references images by digest from its ``message_images`` rows
and removes a file only when no row references it any more (a chat deleted, an edited turn).

The kind of an image is read from its first bytes (PNG, JPEG, WebP, GIF), never from a file
name or a declared type.

Threading contract: no state but the root folder. ``ChatStore`` calls ``put`` and ``discard``
while holding its lock, so a file being written for a new message can't be removed by a
concurrent delete of another chat that referenced the same image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from backend.errors import ImageRejected
from backend.store.records import StoredImage

FOLDER = "images"
#: The kinds of image a chat can carry, by media type, with the extension their files get.
EXTENSIONS: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
                              "image/gif": "gif"}
#: File name suffixes taken as images when files are chosen or dropped (the bytes decide).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif"})
_DIGEST = re.compile(r"[0-9a-f]{64}")
KINDS_SENTENCE = "PNG, JPEG, WebP or GIF"


def sniff_media_type(data: bytes) -> str | None:
    """The image kind the bytes start with, or None when they are none of those we take."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def require_media_type(data: bytes, name: str = "The image") -> str:
    """``sniff_media_type``, or ``ImageRejected`` saying which kinds are taken."""
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ImageRejected(f"{name} isn't a {KINDS_SENTENCE} image, so it can't be attached.")
    return media_type


class ImageStore:
    """Content-addressed image files under ``root`` (``<data>/images``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str, media_type: str) -> Path:
        """Where the image with this digest lives. A digest that isn't 64 lower-case hex
        characters, or a kind not taken, is refused: the name can't leave ``root``."""
        ext = EXTENSIONS.get(media_type)
        if ext is None or not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a stored image: {digest!r} ({media_type!r})")
        return self.root / digest[:2] / f"{digest}.{ext}"

    def record(self, digest: str, media_type: str) -> StoredImage:
        return StoredImage(digest, media_type, self.path_for(digest, media_type))

    def put(self, data: bytes) -> StoredImage:
        """Store ``data`` (once per content) and say where it is. Raises ``ImageRejected`` for
        bytes that are not an image of a kind we take."""
        media_type = require_media_type(data)
        image = self.record(hashlib.sha256(data).hexdigest(), media_type)
        if image.path.is_file() and image.path.stat().st_size == len(data):
            return image  # already kept (same hash, same length: the same bytes)
        image.path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=".part-", dir=image.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, image.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise
        return image

    def copy_out(self, images: list[StoredImage], folder: Path) -> None:
        """Copy images into ``folder`` (an export's), each as ``<digest>.<ext>``; a file
        missing from the data folder is skipped (the export's link to it shows as broken)."""
        import shutil

        if images:
            folder.mkdir(parents=True, exist_ok=True)
        for image in images:
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(image.path, folder / image.path.name)

    def discard(self, image: StoredImage) -> None:
        """Remove an image no message references any more (gone already: nothing to do)."""
        with contextlib.suppress(OSError, ValueError):
            self.path_for(image.digest, image.media_type).unlink()
