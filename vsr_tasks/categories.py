"""VSR relation -> meta-category, as in the VSR paper's table: VSR's own ``rel_meta_category_dict.txt`` (shipped in
``annotations/``), read here, plus one relation it lacks.

That file misses ``congruent``
(one row in the random split). Congruence is the "equal" relation of the
region connection calculus, so it belongs with the other topological relations.
``among`` appears twice in that file; VSR's own loader keeps the last line that
names it, so it is ``Unallocated`` here as well.
"""

from __future__ import annotations

from pathlib import Path

TABLE_FILE = Path(__file__).resolve().parent / "annotations" / "rel_meta_category_dict.txt"  # VSR's own file
ADDED = {"congruent": "Topological"}  # the relation the file misses (above)


def _parse_table(text: str) -> dict[str, str]:
    relation_to_category: dict[str, str] = {}
    for line in text.strip().splitlines():
        category, relations = line.split(":", 1)
        for relation in relations.split(","):
            relation_to_category[relation.strip()] = category.strip()
    return relation_to_category


_TEXT = TABLE_FILE.read_text(encoding="utf-8")
RELATION_TO_CATEGORY: dict[str, str] = {**_parse_table(_TEXT), **ADDED}
# in the file's order; the tasks' ``accuracy_<category>`` metrics (the YAML names one per category, and a test checks
# that it names exactly these)
META_CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(line.split(":", 1)[0] for line in _TEXT.strip().splitlines()))


def meta_category(relation: str) -> str:
    """Meta-category of a VSR relation; unknown relations raise, so a typo cannot hide in 'other'."""
    try:
        return RELATION_TO_CATEGORY[relation.strip()]
    except KeyError:
        raise KeyError(f"relation {relation!r} is not in the VSR meta-category table") from None
