"""Image bytes to pixels (image_decode.py): formats, limits and damaged input, no model."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from backend.engine.image_decode import (
    MAX_IMAGE_BYTES,
    MAX_SIDE_PX,
    check_image_count,
    decode_image,
)
from backend.engine.types import ImageInput
from backend.errors import ImageRejected


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB",
            color: object = (10, 20, 30), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, **save)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "PNG"), ("JPEG", "JPEG"),
                                           ("WEBP", "WebP"), ("GIF", "GIF")])
def test_each_accepted_format_decodes_to_rgb(fmt: str, kind: str) -> None:
    image = decode_image(ImageInput(encoded(fmt), "image/whatever"))
    assert (image.width, image.height, image.kind) == (40, 30, kind)
    assert len(image.rgb) == 40 * 30 * 3


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(ImageInput(out.getvalue()))
    r, _, b = image.rgb[:3]
    assert r > 200 and b < 50


def test_transparency_is_flattened_onto_white() -> None:
    image = decode_image(ImageInput(encoded("PNG", mode="RGBA", color=(0, 0, 0, 0))))
    assert image.rgb[:3] == b"\xff\xff\xff"


def test_a_very_large_image_is_shrunk_keeping_its_aspect() -> None:
    image = decode_image(ImageInput(encoded("PNG", size=(MAX_SIDE_PX * 2, 100))))
    assert image.width == MAX_SIDE_PX and image.height == 50
    assert image.original_size == (MAX_SIDE_PX * 2, 100)


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (8_000, 7_000)])
def test_too_many_pixels_are_refused_from_the_header(width: int, height: int) -> None:
    with pytest.raises(ImageRejected, match="megapixels"):
        decode_image(ImageInput(png_header_only(width, height)))


@pytest.mark.parametrize(("data", "words"), [
    (b"<?xml version='1.0'?><svg></svg>", "SVG"),
    (b"%PDF-1.7 ...", "PDF"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "damaged"),
    (encoded("PNG", size=(300, 300))[:200], "damaged"),
    (encoded("JPEG", size=(300, 300))[:300], "damaged"),
    (encoded("BMP"), "not an image Hearth can read"),
    (b"\x00" * (MAX_IMAGE_BYTES + 1), "MB"),
])
def test_bad_input_is_refused_with_a_sentence(data: bytes, words: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(ImageInput(data), index=2)
    assert words in caught.value.user_message
    assert caught.value.user_message.startswith("Image 2")


def test_too_many_images() -> None:
    check_image_count(16)
    with pytest.raises(ImageRejected, match="at most 16"):
        check_image_count(17)
