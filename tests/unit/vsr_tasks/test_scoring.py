"""Answer parsing, metrics on a hand-computed example, and the meta-category table."""

from __future__ import annotations

import math

import pytest

from tests.support.scoring import reference_answer
from vsr_tasks import scoring
from vsr_tasks.categories import META_CATEGORIES, RELATION_TO_CATEGORY, meta_category
from vsr_tasks.data import DATASET_TYPES, PACKAGED_ANNOTATIONS, SPLITS, load_split

PARSE_CASES = [
    ("True", True),
    ("False", False),
    ("true", True),
    ("FALSE", False),
    ("True.", True),
    ("False!", False),
    ("  true\n", True),
    ("False. The cat is not on the mat.", False),
    ("True, because the dog is left of the car", True),
    ("Yes", True),
    ("no.", False),
    ('"True"', True),
    ("**False**", False),
    ("Answer: True", True),
    ("The answer is false.", False),
    ("(True)", True),
    ("Maybe", None),
    ("", None),
    ("Truely not", None),
    ("I think it is True", None),
    ("not sure", None),
    ("None", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_answer(text, expected):
    assert scoring.parse_answer(text) is expected
    # the tests' own reading of the rule (tests.support.scoring.reference_answer) agrees on every case
    assert reference_answer(text) is expected


def _records():
    # (answer, label, relation) -> predictions True, False, None, True, False, True
    rows = [
        ("True", 1, "left of"),  # correct TP, Projective
        ("False", 1, "on"),  # wrong FN, Topological
        ("banana", 0, "on"),  # unparseable, wrong, Topological
        ("True", 0, "near"),  # wrong FP, Proximity
        ("no", 0, "near"),  # correct TN, Proximity
        ("yes", 1, "facing"),  # correct TP, Orientation
    ]
    return [scoring.score_record(answer, label, relation, meta_category(relation)) for answer, label, relation in rows]


def test_metrics_on_a_hand_computed_example():
    records = _records()
    assert scoring.accuracy(records) == pytest.approx(3 / 6)
    # TP=2 (rows 1, 6), FP=1 (row 4), FN=1 (row 2); the unparseable answer on a False label is a TN
    assert scoring.f1_true(records) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scoring.unparseable_rate(records) == pytest.approx(1 / 6)
    assert scoring.category_accuracy(records, "Topological") == 0.0
    assert scoring.category_accuracy(records, "Proximity") == 0.5
    assert scoring.category_accuracy(records, "Projective") == 1.0
    assert math.isnan(scoring.category_accuracy(records, "Adjacency"))


def test_unparseable_on_true_label_is_a_false_negative():
    records = [scoring.score_record("???", 1, "on", "Topological")]
    assert scoring.f1_true(records) == 0.0
    assert records[0]["correct"] is False


def test_every_relation_in_vsr_has_a_category():
    relations = set()
    for dataset_type in DATASET_TYPES:
        for split in SPLITS:
            relations |= {row["relation"] for row in load_split(dataset_type, split, PACKAGED_ANNOTATIONS)}
    assert len(relations) == 66
    assert {meta_category(r) for r in relations} <= set(META_CATEGORIES)
    assert meta_category("congruent") == "Topological"
    assert meta_category("among") == "Unallocated"


def test_table_matches_the_shipped_file_except_the_documented_fixes():
    shipped = {}
    for line in (PACKAGED_ANNOTATIONS / "rel_meta_category_dict.txt").read_text().strip().splitlines():
        category, relations = line.split(":", 1)
        for relation in relations.split(","):
            shipped[relation.strip()] = category.strip()
    ours = dict(RELATION_TO_CATEGORY)
    assert ours.pop("congruent") == "Topological"
    assert ours == shipped


def test_unknown_relation_is_refused_by_name():
    with pytest.raises(KeyError, match="'levitating above'"):
        meta_category("levitating above")
