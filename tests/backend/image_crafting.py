"""Small real image files for tests, made without an imaging library: a PNG written by hand
(signature, IHDR, IDAT, IEND with their CRCs), and the first bytes of the other kinds."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A solid-colour RGB PNG any decoder opens."""
    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


GIF_HEAD = b"GIF89a\x01\x00\x01\x00"
WEBP_HEAD = b"RIFF\x10\x00\x00\x00WEBPVP8 "
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF"
