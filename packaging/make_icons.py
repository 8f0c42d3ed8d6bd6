"""Render ``assets/icons/hearth.svg`` into the icon files each platform wants.

    .venv/bin/python packaging/make_icons.py

Writes ``hearth-<N>.png`` for the freedesktop sizes, ``hearth.ico`` (Windows: the exe and the
installer) and ``hearth.icns`` (the macOS app bundle). The outputs are committed, so building
a package never needs this script; run it again only after editing the SVG.

Qt's own SVG renderer draws the PNGs (PySide6 is installed anyway, and it needs no ImageMagick
or librsvg); Pillow packs them into .ico and .icns, which it can write on any platform.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"
SVG = ICONS / "hearth.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # Windows picks per DPI; 256 is the largest it reads
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # 1024 is the @2x of 512 on Retina screens


def render(size: int) -> bytes:
    """The SVG drawn at ``size`` x ``size`` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def main() -> int:
    # QImage and QPainter need a QGuiApplication; offscreen needs no display.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    images: dict[int, Image.Image] = {}
    for size in sorted({*PNG_SIZES, *ICO_SIZES, *ICNS_SIZES}):
        images[size] = Image.open(io.BytesIO(render(size))).convert("RGBA")
    for size in PNG_SIZES:
        out = ICONS / f"hearth-{size}.png"
        images[size].save(out, optimize=True)
        print(f"wrote {out.relative_to(ICONS.parents[1])}")
    # Each size is drawn from the SVG, not downscaled from 256: small sizes stay crisp.
    largest = images[max(ICO_SIZES)]
    largest.save(ICONS / "hearth.ico", sizes=[(s, s) for s in ICO_SIZES],
                 append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    print("wrote assets/icons/hearth.ico")
    images[max(ICNS_SIZES)].save(ICONS / "hearth.icns",
                                 append_images=[images[s] for s in ICNS_SIZES[:-1]])
    print("wrote assets/icons/hearth.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
