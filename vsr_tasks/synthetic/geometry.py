"""The synthetic relations, defined on two boxes: the one place that decides a caption's label.

Boxes are COCO ``[x, y, w, h]`` in pixels, y pointing down, so the same function
labels a scene when it is generated and re-checks it later from
``instances_*.json`` alone. Quantities, for subject box ``s`` and object box ``o``:

* ``scale``: the mean of ``sqrt(w * h)`` of the two boxes; distances are measured
  in object sizes, so "near" means the same thing at any image size.
* ``hgap`` / ``vgap``: the gap between the boxes' x (y) projections; negative when
  they overlap (then minus the overlap length).
* ``gap``: the Euclidean distance between the closest points of the boxes (0 if they meet).
* ``x_overlap`` / ``y_overlap``: the projections' overlap as a fraction of the narrower
  (shorter) box.

Definitions (``relation_holds``):

* ``left of`` / ``right of``: the subject's centre x is smaller / larger than the object's.
* ``above`` / ``below``: the subject's centre y is smaller / larger (higher / lower in the image).
* ``on top of``: the subject is above (centre y), ``x_overlap >= 0.5``, and its bottom edge
  meets the object's top edge within ``0.1 * scale``. ``under`` is the mirror image
  (the subject's top edge meets the object's bottom edge).
* ``at the left side of`` / ``at the right side of``: left of / right of (centre x),
  ``y_overlap >= 0.5``, and near.
* ``near``: ``gap < 0.75 * scale``; ``far from``: ``gap > 0.75 * scale``.

Centre-based definitions alone would be ambiguous for boxes that overlap a lot or
sit side by side. The generator therefore only keeps scenes where
:func:`relation_is_clear` holds: whichever way the label goes, it goes with a margin
that any reasonable reading of the relation agrees with (separated projections for
left/right/above/below, stacked or side-by-side contact, clearly near or clearly far).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Box = Sequence[float]  # COCO [x, y, w, h]

RELATIONS: tuple[str, ...] = (
    "left of",
    "right of",
    "above",
    "below",
    "on top of",
    "under",
    "at the left side of",
    "at the right side of",
    "near",
    "far from",
)

# Label thresholds (fractions of `scale`, or of the narrower extent for overlaps).
MIN_OVERLAP = 0.5
CONTACT_TOLERANCE = 0.1
NEAR_FAR_THRESHOLD = 0.75

# Generator margins: a scene is kept only if it is this far from every threshold above.
CLEAR_SEPARATION = 0.25
CLEAR_OVERLAP = 0.6
CLEAR_CONTACT = 0.05
CLEAR_NEAR = 0.3
CLEAR_FAR = 1.5


@dataclass(frozen=True)
class PairGeometry:
    """Everything the relations need about a (subject, object) pair of boxes."""

    scale: float
    dx: float  # object centre x - subject centre x (> 0: subject is left)
    dy: float  # object centre y - subject centre y (> 0: subject is higher)
    hgap: float
    vgap: float
    gap: float
    x_overlap: float
    y_overlap: float
    top_contact: float  # object top - subject bottom (0: subject sits on the object)
    bottom_contact: float  # subject top - object bottom (0: subject hangs under the object)


def pair_geometry(subject_box: Box, object_box: Box) -> PairGeometry:
    """Measure a box pair once; both the label and the margin checks read from this."""
    sx, sy, sw, sh = (float(v) for v in subject_box)
    ox, oy, ow, oh = (float(v) for v in object_box)
    if min(sw, sh, ow, oh) <= 0:
        raise ValueError(f"boxes need a positive width and height, got {subject_box} and {object_box}")
    hgap = max(sx, ox) - min(sx + sw, ox + ow)
    vgap = max(sy, oy) - min(sy + sh, oy + oh)
    return PairGeometry(
        scale=(math.sqrt(sw * sh) + math.sqrt(ow * oh)) / 2,
        dx=(ox + ow / 2) - (sx + sw / 2),
        dy=(oy + oh / 2) - (sy + sh / 2),
        hgap=hgap,
        vgap=vgap,
        gap=math.hypot(max(hgap, 0.0), max(vgap, 0.0)),
        x_overlap=max(-hgap, 0.0) / min(sw, ow),
        y_overlap=max(-vgap, 0.0) / min(sh, oh),
        top_contact=oy - (sy + sh),
        bottom_contact=sy - (oy + oh),
    )


def _check(relation: str) -> None:
    if relation not in RELATIONS:
        raise ValueError(f"unknown synthetic relation {relation!r}; known: {', '.join(RELATIONS)}")


def relation_holds(relation: str, subject_box: Box, object_box: Box) -> bool:
    """Whether ``The SUBJ is RELATION the OBJ.`` is true for these COCO ``[x, y, w, h]`` boxes."""
    _check(relation)
    g = pair_geometry(subject_box, object_box)
    near = g.gap < NEAR_FAR_THRESHOLD * g.scale
    contact = CONTACT_TOLERANCE * g.scale
    if relation == "left of":
        return g.dx > 0
    if relation == "right of":
        return g.dx < 0
    if relation == "above":
        return g.dy > 0
    if relation == "below":
        return g.dy < 0
    if relation == "on top of":
        return g.dy > 0 and g.x_overlap >= MIN_OVERLAP and abs(g.top_contact) <= contact
    if relation == "under":
        return g.dy < 0 and g.x_overlap >= MIN_OVERLAP and abs(g.bottom_contact) <= contact
    if relation == "at the left side of":
        return g.dx > 0 and g.y_overlap >= MIN_OVERLAP and near
    if relation == "at the right side of":
        return g.dx < 0 and g.y_overlap >= MIN_OVERLAP and near
    if relation == "near":
        return near
    return g.gap > NEAR_FAR_THRESHOLD * g.scale  # far from


def relation_is_clear(relation: str, subject_box: Box, object_box: Box) -> bool:
    """Whether the pair is unambiguous for this relation, True or False, with the generator's margins.

    Only the layout matters, not which way round the subject is: a clear "left of"
    pair is clearly "right of" when swapped.
    """
    _check(relation)
    g = pair_geometry(subject_box, object_box)
    if relation in ("left of", "right of"):
        return g.hgap >= CLEAR_SEPARATION * g.scale
    if relation in ("above", "below"):
        return g.vgap >= CLEAR_SEPARATION * g.scale
    if relation in ("on top of", "under"):
        stacked = min(abs(g.top_contact), abs(g.bottom_contact)) <= CLEAR_CONTACT * g.scale
        return stacked and g.x_overlap >= CLEAR_OVERLAP
    if relation in ("at the left side of", "at the right side of"):
        return 0 <= g.hgap <= CLEAR_NEAR * g.scale and g.y_overlap >= CLEAR_OVERLAP
    disjoint = g.hgap > 0 or g.vgap > 0
    return disjoint and (g.gap <= CLEAR_NEAR * g.scale or g.gap >= CLEAR_FAR * g.scale)


def caption(subject: str, relation: str, obj: str) -> str:
    """A VSR-style caption."""
    _check(relation)
    return f"The {subject} is {relation} the {obj}."


def parse_caption(text: str) -> tuple[str, str, str]:
    """``(subject, relation, object)`` of a caption written by :func:`caption`.

    The longest relation that fits wins, so "at the left side of" is never read as "left of".
    """
    if text.startswith("The ") and text.endswith("."):
        body = text[len("The ") : -1]
        for relation in sorted(RELATIONS, key=len, reverse=True):
            marker = f" is {relation} the "
            if marker in body:
                subject, obj = body.split(marker, 1)
                if subject and obj:
                    return subject, relation, obj
    raise ValueError(f"not a synthetic VSR caption: {text!r}")
