"""The pictures of ``classify explain`` for images: one PNG per image and a contact sheet, with Pillow.

The palette is the course's (and ``classify-train weight-maps``'s): matplotlib's RdBu, blue for the
target class, red against, white at zero, on a scale symmetric about zero so equal votes for and against
get equally strong colours. Each map is scaled to its own 99.5th percentile of |attribution| (as the
weight maps are): one hot pixel then cannot wash out the rest, and maps of different methods, whose
units differ, all use the full range. The digit is drawn underneath in grey ink on white, so the colours
can be read against the strokes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import MissingDependencyError

PILLOW_MISSING = "writing the explain pictures needs Pillow: pip install 'classify-client[images]'"
# ColorBrewer's 11-class RdBu (matplotlib's RdBu), from -1 (dark red) through white to +1 (dark blue).
RDBU = np.array(
    [
        (103, 0, 31), (178, 24, 43), (214, 96, 77), (244, 165, 130), (253, 219, 199), (247, 247, 247),
        (209, 229, 240), (146, 197, 222), (67, 147, 195), (33, 102, 172), (5, 48, 97),
    ],
    dtype=np.float32,
)  # fmt: skip
SCALE_PERCENTILE = 99.5
# Ink at most this dark (of 255) under the colours: dark enough to see the digit, light enough that the
# colours on top of it stay readable.
INK = 0.5
SIDE = 28
IMAGE_ZOOM = 8  # a single picture: 224 px square
SHEET_ZOOM = 3  # a contact sheet tile: 84 px square
SHEET_COLUMNS = 8
SHEET_ITEMS = SHEET_COLUMNS * SHEET_COLUMNS
WHITE = (255, 255, 255)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class Panel:
    """One explained class of one image: what the picture shows and says."""

    digit: np.ndarray  # (28, 28) uint8, light on dark as served
    map: np.ndarray  # (28, 28) float32, positive = for the class
    label: str
    probability: float


def import_pillow() -> Any:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:
        raise MissingDependencyError(PILLOW_MISSING) from exc
    return Image, ImageDraw, ImageFont


def scale_of(attribution: np.ndarray) -> float:
    """The symmetric colour scale of one map: |value| at this value and above is the full colour."""
    magnitude = np.abs(attribution[np.isfinite(attribution)])
    if magnitude.size == 0:
        return 1.0
    scale = float(np.percentile(magnitude, SCALE_PERCENTILE))
    if scale <= 0:
        scale = float(magnitude.max())
    return scale if scale > 0 else 1.0


def rdbu(values: np.ndarray) -> np.ndarray:
    """Colours (..., 3) float32 of ``values`` in [-1, 1] on the RdBu ramp (linear between its stops)."""
    position = (np.clip(values, -1.0, 1.0) + 1.0) / 2.0 * (len(RDBU) - 1)
    low = np.floor(position).astype(int).clip(0, len(RDBU) - 2)
    fraction = (position - low)[..., None]
    return RDBU[low] * (1 - fraction) + RDBU[low + 1] * fraction


def overlay(digit: np.ndarray, attribution: np.ndarray) -> np.ndarray:
    """(28, 28, 3) uint8: the digit in grey ink on white, the attribution's colour over it.

    The colour's opacity is the square root of |attribution| / scale, so the ink shows through where
    the map is near zero, a strong vote hides it, and the many middling values of a smooth method
    (integrated gradients spreads its total over the whole stroke) are still seen."""
    relative = np.nan_to_num(attribution / scale_of(attribution))
    ink = 255.0 - INK * digit.astype(np.float32)
    alpha = np.sqrt(np.clip(np.abs(relative), 0.0, 1.0))[..., None]
    mixed = ink[..., None] * (1 - alpha) + rdbu(relative) * alpha
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


class Painter:
    """Draws the PNGs; holds the Pillow modules and the fonts (loaded once per run)."""

    def __init__(self) -> None:
        self._image, self._draw, font = import_pillow()
        self._title = font.load_default(size=15)
        self._small = font.load_default(size=11)

    def tile(self, panel: Panel, zoom: int) -> Any:
        pixels = overlay(panel.digit, panel.map)
        return self._image.fromarray(pixels, "RGB").resize(
            (SIDE * zoom, SIDE * zoom), self._image.Resampling.NEAREST
        )

    def picture(self, panels: list[Panel], method: str) -> Any:
        """One image's PNG: a panel per explained class side by side, each titled with its label and
        probability, and a colour bar naming the method and the scale."""
        side, title, bar = SIDE * IMAGE_ZOOM, 24, 30
        canvas = self._image.new("RGB", (side * len(panels), title + side + bar), WHITE)
        draw = self._draw.Draw(canvas)
        for number, panel in enumerate(panels):
            left = number * side
            canvas.paste(self.tile(panel, IMAGE_ZOOM), (left, title))
            heading = f"{panel.label}   p = {panel.probability:.3f}"
            draw.text((left + side // 2, 4), heading, fill=TEXT, font=self._title, anchor="ma")
            self._colour_bar(canvas, draw, (left + 8, title + side + 4, left + side - 8), panel, method)
        return canvas

    def _colour_bar(
        self, canvas: Any, draw: Any, box: tuple[int, int, int], panel: Panel, method: str
    ) -> None:
        left, top, right = box
        ramp = rdbu(np.linspace(-1.0, 1.0, right - left, dtype=np.float32))
        strip = np.repeat(np.rint(ramp)[None].astype(np.uint8), 6, axis=0)
        canvas.paste(self._image.fromarray(strip, "RGB"), (left, top))
        scale = scale_of(panel.map)
        draw.text((left, top + 8), f"-{scale:.2g}", fill=TEXT, font=self._small)
        draw.text((right, top + 8), f"+{scale:.2g}", fill=TEXT, font=self._small, anchor="ra")
        draw.text((left + (right - left) // 2, top + 8), method, fill=TEXT, font=self._small, anchor="ma")

    def contact_sheet(self, panels: list[Panel], heading: str) -> Any:
        """Up to 64 images, 8 a row, each captioned with its label and probability (2 digits)."""
        side, caption, gap, top = SIDE * SHEET_ZOOM, 14, 4, 40
        rows = max(1, -(-len(panels) // SHEET_COLUMNS))
        width = SHEET_COLUMNS * (side + gap) + gap
        canvas = self._image.new("RGB", (width, top + rows * (side + caption + gap)), WHITE)
        draw = self._draw.Draw(canvas)
        draw.text((width // 2, 4), heading, fill=TEXT, font=self._small, anchor="ma")
        draw.text(
            (width // 2, 20),
            "blue: for the class, red: against; each tile scaled to its 99.5th percentile of |attribution|",
            fill=TEXT,
            font=self._small,
            anchor="ma",
        )
        for number, panel in enumerate(panels[:SHEET_ITEMS]):
            row, column = divmod(number, SHEET_COLUMNS)
            left = gap + column * (side + gap)
            upper = top + row * (side + caption + gap)
            label = f"{panel.label}  {panel.probability:.2f}"
            draw.text((left + side // 2, upper), label, fill=TEXT, font=self._small, anchor="ma")
            canvas.paste(self.tile(panel, SHEET_ZOOM), (left, upper + caption))
        return canvas


def save_png(image: Any, path: Path) -> None:
    # An adaptive palette of 256 colours keeps the files small (the maps are blocks of a few colours)
    # with no visible loss; optimize squeezes a little more.
    image.quantize(colors=256).save(path, optimize=True)
