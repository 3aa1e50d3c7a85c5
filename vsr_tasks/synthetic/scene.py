"""Scenes: which objects, where, so that a sampled (relation, label) is true or false with a margin.

Each scene holds two or three objects of distinct COCO categories (so "the cat"
names one box). The caption speaks about two of them; a third, when present, is a
distractor placed away from both. Layouts are built constructively for the
relation's family (separated, stacked, side by side, near, far) and then checked
with :func:`relation_holds` and :func:`relation_is_clear`, so a scene that slipped
through construction with the wrong label or a thin margin is resampled, never kept.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from vsr_tasks.synthetic.geometry import (
    CLEAR_NEAR,
    CLEAR_SEPARATION,
    pair_geometry,
    relation_holds,
    relation_is_clear,
)


@dataclass(frozen=True)
class Category:
    """A COCO category as drawn here: one shape and one colour each, so a small model can tell them apart."""

    id: int  # COCO's own category id
    name: str
    supercategory: str
    shape: str
    colour: tuple[int, int, int]
    aspect: float  # width / height of the box


CATEGORIES: tuple[Category, ...] = (
    Category(3, "car", "vehicle", "rectangle", (215, 40, 40), 1.6),
    Category(6, "bus", "vehicle", "hexagon", (235, 195, 20), 2.0),
    Category(15, "bench", "outdoor", "cross", (30, 185, 200), 1.3),
    Category(17, "cat", "animal", "triangle", (200, 50, 200), 1.0),
    Category(18, "dog", "animal", "ellipse", (40, 80, 220), 1.25),
    Category(47, "cup", "kitchen", "trapezoid", (40, 160, 60), 0.8),
)

# Which layout each relation is decided on, and whether the relation's subject is the
# first box of that layout (left / upper) when the caption is true.
_FAMILY = {
    "left of": ("hsep", True),
    "right of": ("hsep", False),
    "above": ("vsep", True),
    "below": ("vsep", False),
    "on top of": ("stack", True),
    "under": ("stack", False),
    "at the left side of": ("side", True),
    "at the right side of": ("side", False),
}

OBJECT_SIZE = (0.13, 0.24)  # sqrt(w * h) as a fraction of the image side
PADDING = 0.02  # empty border, as a fraction of the image side
THIRD_OBJECT_PROBABILITY = 0.5
_ATTEMPTS = 200

XYXY = tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """Objects as (category, box); ``subject`` and ``object`` index into it."""

    objects: tuple[tuple[Category, XYXY], ...]
    subject: int
    object: int


def coco_box(box: XYXY) -> list[float]:
    """``[x0, y0, x1, y1]`` (x1, y1 exclusive) -> COCO ``[x, y, w, h]``."""
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _size(rng: random.Random, category: Category, side: int) -> tuple[int, int]:
    base = rng.uniform(*OBJECT_SIZE) * side
    root = math.sqrt(category.aspect)
    return max(4, round(base * root)), max(4, round(base / root))


def _inside(box: XYXY, side: int, pad: int) -> bool:
    x0, y0, x1, y1 = box
    return x0 >= pad and y0 >= pad and x1 <= side - pad and y1 <= side - pad


def _scale(first: tuple[int, int], second: tuple[int, int]) -> float:
    return (math.sqrt(first[0] * first[1]) + math.sqrt(second[0] * second[1])) / 2


def _free(rng: random.Random, size: tuple[int, int], side: int, pad: int) -> XYXY:
    w, h = size
    x, y = rng.randint(pad, side - pad - w), rng.randint(pad, side - pad - h)
    return x, y, x + w, y + h


def _along(
    rng: random.Random, first: tuple[int, int], second: tuple[int, int], gap: int, side: int, pad: int, axis: int
) -> tuple[XYXY, XYXY] | None:
    """Two boxes one after the other on ``axis`` (0: left to right, 1: top to bottom) with ``gap`` pixels
    between them, the second centred on the first along the other axis up to a small offset."""
    length = first[axis] + gap + second[axis]
    if length > side - 2 * pad:
        return None
    start = rng.randint(pad, side - pad - length)
    across = 1 - axis
    first_start = rng.randint(pad, side - pad - first[across])
    offset = rng.uniform(-0.15, 0.15) * min(first[across], second[across])
    second_start = round(first_start + (first[across] - second[across]) / 2 + offset)
    spans = [(start, start + first[axis]), (start + first[axis] + gap, start + length)]
    across_spans = [(first_start, first_start + first[across]), (second_start, second_start + second[across])]
    boxes = []
    for (a0, a1), (c0, c1) in zip(spans, across_spans):
        boxes.append((a0, c0, a1, c1) if axis == 0 else (c0, a0, c1, a1))
    return boxes[0], boxes[1]


def _layout(
    rng: random.Random, family: str, first: tuple[int, int], second: tuple[int, int], side: int, pad: int
) -> tuple[XYXY, XYXY] | None:
    scale = _scale(first, second)
    if family in ("hsep", "vsep"):
        axis = 0 if family == "hsep" else 1
        least = math.ceil(CLEAR_SEPARATION * scale) + 1
        most = side - 2 * pad - first[axis] - second[axis]
        if most < least:
            return None
        gap = rng.randint(least, most)
        boxes = _along(rng, first, second, gap, side, pad, axis)
        if boxes is None:
            return None
        # Separated pairs need not line up: move the second box freely across the axis.
        x0, y0, x1, y1 = _free(rng, second, side, pad)
        b0, b1, b2, b3 = boxes[1]
        moved = (b0, y0, b2, y1) if axis == 0 else (x0, b1, x1, b3)
        return boxes[0], moved
    if family == "stack":
        return _along(rng, first, second, 0, side, pad, axis=1)
    if family == "side":
        return _along(rng, first, second, rng.randint(0, math.floor(0.8 * CLEAR_NEAR * scale)), side, pad, axis=0)
    if family == "near":
        gap = rng.randint(1, max(1, math.floor(0.8 * CLEAR_NEAR * scale)))
        return _along(rng, first, second, gap, side, pad, axis=rng.randint(0, 1))
    # far: both boxes anywhere, kept only if far enough apart (checked by the caller)
    return _free(rng, first, side, pad), _free(rng, second, side, pad)


def _family_for(relation: str, label: bool, rng: random.Random) -> tuple[str, bool]:
    """The layout family and whether the subject takes the layout's first box."""
    if relation in _FAMILY:
        family, subject_first = _FAMILY[relation]
        return family, subject_first == label
    near_layout = (relation == "near") == label
    return ("near" if near_layout else "far"), rng.random() < 0.5


def _distance(a: XYXY, b: XYXY) -> float:
    return pair_geometry(coco_box(a), coco_box(b)).gap


def sample_scene(
    rng: random.Random,
    relation: str,
    label: bool,
    side: int,
    categories: Sequence[Category] = CATEGORIES,
    canonical: bool = False,
) -> Scene:
    """A scene whose caption ``The SUBJ is RELATION the OBJ.`` has truth value ``label``, clearly.

    ``canonical``: the subject is whichever of the two drawn categories comes first in ``categories`` (the
    generator's ``train_skew``); otherwise either order is equally likely.
    """
    pad = max(1, round(PADDING * side))
    family, subject_first = _family_for(relation, label, rng)
    for _ in range(_ATTEMPTS):
        subject_category, object_category = rng.sample(categories, 2)
        if canonical and categories.index(object_category) < categories.index(subject_category):
            subject_category, object_category = object_category, subject_category
        sizes = [_size(rng, subject_category, side), _size(rng, object_category, side)]
        if not subject_first:
            sizes.reverse()
        boxes = _layout(rng, family, sizes[0], sizes[1], side, pad)
        if boxes is None or not all(_inside(box, side, pad) for box in boxes):
            continue
        subject_box, object_box = boxes if subject_first else boxes[::-1]
        # The label comes from the geometry; construction only makes the wanted label likely.
        if relation_holds(relation, coco_box(subject_box), coco_box(object_box)) != label:
            continue
        if not relation_is_clear(relation, coco_box(subject_box), coco_box(object_box)):
            continue
        objects = [(subject_category, subject_box), (object_category, object_box)]
        if rng.random() < THIRD_OBJECT_PROBABILITY:
            objects.extend(_distractor(rng, objects, side, pad, categories))
        return Scene(objects=tuple(objects), subject=0, object=1)
    raise RuntimeError(f"could not lay out {relation!r} ({label}) in a {side}px image; is the image too small?")


def _distractor(rng: random.Random, objects: list, side: int, pad: int, categories: Sequence[Category]) -> list:
    """A third object of another category, well away from both, or none if it does not fit (or none is left)."""
    taken = {category.id for category, _ in objects}
    others = [c for c in categories if c.id not in taken]
    if not others:
        return []
    category = rng.choice(others)
    size = _size(rng, category, side)
    for _ in range(50):
        box = _free(rng, size, side, pad)
        if all(_distance(box, other) >= CLEAR_NEAR * math.sqrt(size[0] * size[1]) for _, other in objects):
            return [(category, box)]
    return []
