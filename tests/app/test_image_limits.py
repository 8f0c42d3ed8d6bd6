"""Image files that can't be attached in the window, each refused with its reason when
attached (the request's own limits: application layer and engine), and nothing else done."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.views.image_widgets import ImageProblem, read_image
from tests.backend.image_crafting import png


def test_bad_images_are_said_by_name(qtbot: QtBot, tmp_path: Path) -> None:
    """Hostile files are refused when attached, each with its reason, and nothing else."""
    huge = tmp_path / "huge.png"  # 20,000 x 20,000 pixels claimed by a tiny file
    header = bytearray(png(1, 1))
    header[16:24] = (20_000).to_bytes(4, "big") * 2
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")
    huge.write_bytes(bytes(header))
    heavy = tmp_path / "heavy.jpg"  # 51 MB
    with heavy.open("wb") as out:
        out.write(b"\xff\xd8\xff\xe0")
        out.truncate(51 * 2**20)
    svg = tmp_path / "logo.png"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>")
    # The limits a request has (application layer and engine), not looser ones of the GUI's.
    expected = {huge: "is 20,000 × 20,000 pixels; images up to 50 megapixels",
                heavy: "heavy.jpg is 51 MB; images up to 20 MB can be attached",
                svg: "logo.png isn't a PNG, JPEG, WebP or GIF image",
                tmp_path / "gone.png": "gone.png couldn't be opened"}
    for path, sentence in expected.items():
        with pytest.raises(ImageProblem, match=re.escape(sentence)):
            read_image(path)
