"""Drawing a scene, and the COCO annotation of each drawn object.

Every shape touches all four sides of its box, so the COCO box is exactly the
drawn extent and the polygon in ``segmentation`` is the drawn outline. Images are
plain PNG with fixed settings and no metadata chunks, so equal scenes give equal bytes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

from vsr_tasks.synthetic.scene import XYXY, Scene

_ELLIPSE_POINTS = 24
# Outlines in unit box coordinates (x right, y down); each touches all four sides.
SHAPES: dict[str, tuple[tuple[float, float], ...]] = {
    "rectangle": ((0, 0), (1, 0), (1, 1), (0, 1)),
    "hexagon": ((0, 0.5), (0.25, 0), (0.75, 0), (1, 0.5), (0.75, 1), (0.25, 1)),
    "cross": (
        (1 / 3, 0),
        (2 / 3, 0),
        (2 / 3, 1 / 3),
        (1, 1 / 3),
        (1, 2 / 3),
        (2 / 3, 2 / 3),
        (2 / 3, 1),
        (1 / 3, 1),
        (1 / 3, 2 / 3),
        (0, 2 / 3),
        (0, 1 / 3),
        (1 / 3, 1 / 3),
    ),
    "triangle": ((0.5, 0), (1, 1), (0, 1)),
    "trapezoid": ((0, 0), (1, 0), (0.8, 1), (0.2, 1)),
    "ellipse": tuple(
        (
            0.5 + 0.5 * math.cos(2 * math.pi * k / _ELLIPSE_POINTS),
            0.5 + 0.5 * math.sin(2 * math.pi * k / _ELLIPSE_POINTS),
        )
        for k in range(_ELLIPSE_POINTS)
    ),
}
PNG_SETTINGS = {"format": "PNG", "compress_level": 6, "optimize": False}


def outline(shape: str, box: XYXY) -> list[float]:
    """The shape's polygon in image coordinates, COCO style ``[x1, y1, x2, y2, ...]``."""
    x0, y0, x1, y1 = box
    points: list[float] = []
    for u, v in SHAPES[shape]:
        points.extend((round(x0 + u * (x1 - x0), 2), round(y0 + v * (y1 - y0), 2)))
    return points


def polygon_area(points: list[float]) -> float:
    """Shoelace area of a flat ``[x1, y1, x2, y2, ...]`` polygon (COCO's ``area`` is the mask area)."""
    xs, ys = points[0::2], points[1::2]
    twice = sum(xs[i] * ys[(i + 1) % len(xs)] - xs[(i + 1) % len(xs)] * ys[i] for i in range(len(xs)))
    return round(abs(twice) / 2, 2)


def background(rng: random.Random) -> tuple[int, int, int]:
    """A light, slightly tinted background, so the model cannot key on one exact colour."""
    grey = rng.randint(205, 245)
    return tuple(max(0, min(255, grey + rng.randint(-8, 8))) for _ in range(3))  # type: ignore[return-value]


def render(scene: Scene, side: int, fill: tuple[int, int, int]) -> Image.Image:
    """The scene drawn on a ``side x side`` canvas; pixel columns ``x0 .. x1 - 1`` belong to a box."""
    image = Image.new("RGB", (side, side), fill)
    draw = ImageDraw.Draw(image)
    for category, (x0, y0, x1, y1) in scene.objects:
        if category.shape == "ellipse":
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=category.colour)
            continue
        points = [(x0 + u * (x1 - 1 - x0), y0 + v * (y1 - 1 - y0)) for u, v in SHAPES[category.shape]]
        draw.polygon(points, fill=category.colour)
    return image


def save_png(image: Image.Image, path: Path) -> None:
    """Fixed encoder settings and no text/time chunks: the same pixels always give the same file."""
    image.save(path, **PNG_SETTINGS)
