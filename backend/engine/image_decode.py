"""From an image's bytes to RGB pixels the projector can take, refusing bad input first.

PNG, JPEG, WebP and GIF (its first frame) are read with Pillow. Everything a client can send
wrong is an ``ImageRejected`` with a sentence, decided as early and as cheaply as possible:
too many images and too many bytes before anything is parsed, the kind and the pixel count
from the header before any pixel is decoded (a 20,000 x 20,000 PNG is a few hundred bytes of
header and 1.2 GB of pixels), and unreadable or truncated data while decoding.

Threading: pure functions, any thread (preparation threads call them); Pillow releases the
GIL while it decodes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from backend.engine.types import ImageInput
from backend.errors import ImageRejected

MAX_IMAGES_PER_REQUEST = 16
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # as sent, before decoding
MAX_IMAGE_PIXELS = 50_000_000  # width x height, read from the header
# A larger image is shrunk (aspect kept) before it reaches the projector, which resizes it to
# a few hundred pixels anyway (dynamic-resolution projectors cap their token count far
# below this): it saves copying and resizing tens of megabytes in llama.cpp.
MAX_SIDE_PX = 4096

_KINDS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "MPO": "JPEG"}
ACCEPTED = "PNG, JPEG, WebP or GIF"


@dataclass(frozen=True)
class DecodedImage:
    width: int
    height: int
    rgb: bytes  # width * height * 3 bytes, row by row
    kind: str  # "PNG", "JPEG", "WebP", "GIF"
    original_size: tuple[int, int]  # as sent, before any shrinking


def check_image_count(images: int) -> None:
    if images > MAX_IMAGES_PER_REQUEST:
        raise ImageRejected(f"The request has {images} images; send at most "
                            f"{MAX_IMAGES_PER_REQUEST} in one request.")


def sniff_kind(data: bytes) -> str | None:
    """The accepted kind these bytes start like, else None (SVG, PDF, HEIC…)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _describe_unknown(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return "an SVG drawing"
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF image"
    if not data:
        return "empty"
    return "not an image Hearth can read"


def decode_image(image: ImageInput, index: int = 1) -> DecodedImage:
    """RGB pixels of ``image`` (``index`` names it in sentences: "image 2")."""
    data = image.data
    name = f"Image {index}"
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected(f"{name} carries no image data.")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected(f"{name} is {len(data) / 1e6:.1f} MB; images may be at most "
                            f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB. Send a smaller or more "
                            "compressed image.")
    kind = sniff_kind(bytes(data[:16]))
    if kind is None:
        raise ImageRejected(f"{name} is {_describe_unknown(bytes(data))}; send a {ACCEPTED} "
                            "image.")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise ImageRejected("Reading images needs the Pillow package, which is not installed "
                            "with this Hearth.") from None
    try:
        with warnings.catch_warnings():
            # Pillow warns on huge images (ours is checked right below, from the header,
            # with a sentence) and refuses those over twice its own limit (caught below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if img.format not in _KINDS:
                raise ImageRejected(f"{name} is a {img.format} image; send a {ACCEPTED} "
                                    "image.")
            if width < 1 or height < 1:
                raise ImageRejected(f"{name} has no pixels ({width} x {height}).")
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageRejected(
                    f"{name} is {width:,} x {height:,} pixels ({width * height / 1e6:.0f} "
                    f"megapixels); images may have at most {MAX_IMAGE_PIXELS / 1e6:.0f} "
                    "megapixels. Send a smaller image.")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # an animation: its first frame
            if max(width, height) > MAX_SIDE_PX and img.format == "JPEG":
                img.draft("RGB", (MAX_SIDE_PX, MAX_SIDE_PX))  # decode at a reduced scale
            img.load()
            rgb = _to_rgb(img)
            if max(rgb.size) > MAX_SIDE_PX:
                rgb.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX), Image.Resampling.LANCZOS)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected(f"{name} has far more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, "
                            "the most an image may have. Send a smaller image.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow says "image file is truncated", "broken data stream"…: the data is damaged.
        raise ImageRejected(f"{name} could not be read as a {kind} image: it is damaged or "
                            f"incomplete ({_short(exc)}). Send the file again.") from None
    except MemoryError:
        raise ImageRejected(f"{name} is too large to decode in this machine's memory.") \
            from None
    return DecodedImage(rgb.width, rgb.height, rgb.tobytes(), _KINDS.get(img.format or "", kind),
                        (width, height))


def _to_rgb(img):  # type: ignore[no-untyped-def]  # PIL.Image.Image, imported lazily
    """Flatten transparency onto white (what a viewer shows), palettes to colours."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "…"
