"""VSR relation -> meta-category, as in the VSR paper's table.

The table shipped with VSR (``rel_meta_category_dict.txt``) misses ``congruent``
(one row in the random split). Congruence is the "equal" relation of the
region connection calculus, so it belongs with the other topological relations.
``among`` appears twice in that file; VSR's own loader keeps the last line that
names it, so it is ``Unallocated`` here as well.
"""

from __future__ import annotations

_TABLE = """
Adjacency: adjacent to, alongside, at the side of, at the right side of, at the left side of, attached to, at the back of, ahead of, against, at the edge of
Directional: off, past, toward, down, deep down, up, away from, along, around, from, into, to, across, across from, through, down from
Orientation: facing, facing away from, parallel to, perpendicular to
Projective: on top of, beneath, beside, behind, left of, right of, under, in front of, below, above, over, in the middle of
Proximity: by, close to, near, far from, far away from
Topological: connected to, detached from, has as a part, part of, contains, within, at, on, in, with, surrounding, among, consists of, out of, between, inside, outside, touching, congruent
Unallocated: beyond, next to, opposite to, after, among, enclosed by
"""


def _parse_table(text: str) -> dict[str, str]:
    relation_to_category: dict[str, str] = {}
    for line in text.strip().splitlines():
        category, relations = line.split(":", 1)
        for relation in relations.split(","):
            relation_to_category[relation.strip()] = category.strip()
    return relation_to_category


RELATION_TO_CATEGORY: dict[str, str] = _parse_table(_TABLE)
# in the table's order; the tasks' ``accuracy_<category>`` metrics (the YAML names one per category, and a test checks
# that it names exactly these)
META_CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(line.split(":", 1)[0] for line in _TABLE.strip().splitlines()))


def meta_category(relation: str) -> str:
    """Meta-category of a VSR relation; unknown relations raise, so a typo cannot hide in 'other'."""
    try:
        return RELATION_TO_CATEGORY[relation.strip()]
    except KeyError:
        raise KeyError(f"relation {relation!r} is not in the VSR meta-category table") from None
