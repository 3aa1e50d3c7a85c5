"""The synthetic VSR set: reproducible to the byte, labelled by its own boxes, and loadable as a VSR task.

Labels are re-derived from the written COCO file with pycocotools (not from the
generator's state), the definitions themselves are pinned by hand-made boxes, and
the drawn pixels are checked against the boxes, so the three cannot drift apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.support.environment import REPO_ROOT
from vsr_tasks.categories import RELATION_TO_CATEGORY
from vsr_tasks.data import PACKAGED_ANNOTATIONS, load_split
from vsr_tasks.synthetic import CATEGORIES, RELATIONS, generate, parse_caption, relation_holds, relation_is_clear

COUNTS = {"train": 40, "dev": 30, "test": 21}  # train: two rows per (relation, label); test is odd
SEED = 7
SIZE = 128
COCO_IDS = {3: "car", 6: "bus", 15: "bench", 17: "cat", 18: "dog", 47: "cup"}  # COCO 2017's own ids


def _generate(out: Path, seed: int = SEED) -> Path:
    generate(out, COUNTS["train"], COUNTS["dev"], COUNTS["test"], seed=seed, image_size=SIZE)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path, split: str) -> list[dict]:
    path = root / "splits" / "random" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Written through the real command line, as the demo does."""
    out = tmp_path_factory.mktemp("synthetic") / "set"
    args = ["--n_train", "40", "--n_dev", "30", "--n_test", "21", "--seed", str(SEED), "--image_size", str(SIZE)]
    result = subprocess.run(
        [sys.executable, "-m", "vsr_tasks.synthetic", str(out), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "train 20/20, dev 15/15, test 11/10" in result.stdout
    return out


@pytest.fixture(scope="module")
def cocos(synthetic) -> dict[str, COCO]:
    return {name: COCO(str(synthetic / "annotations" / f"instances_{name}.json")) for name in ("train2017", "val2017")}


# --- the definitions, on boxes drawn by hand ([x, y, w, h], y down) ---------------------------------------------

LEFT, RIGHT = [10, 40, 20, 20], [60, 45, 20, 20]  # 30 px apart, side by side
UPPER, LOWER = [40, 10, 20, 20], [42, 60, 20, 20]  # 30 px apart, one over the other
STACKED_TOP, STACKED_BOTTOM = [40, 20, 20, 20], [35, 40, 30, 20]  # top edge meets bottom edge
ADJACENT_L, ADJACENT_R = [10, 40, 20, 20], [32, 42, 20, 20]  # 2 px apart, rows overlap
FAR_A, FAR_B = [0, 0, 20, 20], [150, 150, 20, 20]

HAND_CASES = [
    ("left of", LEFT, RIGHT, True),
    ("left of", RIGHT, LEFT, False),
    ("right of", RIGHT, LEFT, True),
    ("right of", LEFT, RIGHT, False),
    ("above", UPPER, LOWER, True),
    ("above", LOWER, UPPER, False),
    ("below", LOWER, UPPER, True),
    ("below", UPPER, LOWER, False),
    ("on top of", STACKED_TOP, STACKED_BOTTOM, True),
    ("on top of", STACKED_BOTTOM, STACKED_TOP, False),
    ("on top of", UPPER, LOWER, False),  # above, but not touching
    ("under", STACKED_BOTTOM, STACKED_TOP, True),
    ("under", STACKED_TOP, STACKED_BOTTOM, False),
    ("at the left side of", ADJACENT_L, ADJACENT_R, True),
    ("at the left side of", ADJACENT_R, ADJACENT_L, False),
    ("at the left side of", FAR_A, [100, 0, 20, 20], False),  # left of and level, but not near
    ("at the right side of", ADJACENT_R, ADJACENT_L, True),
    ("at the right side of", UPPER, LOWER, False),
    ("near", ADJACENT_L, ADJACENT_R, True),
    ("near", STACKED_TOP, STACKED_BOTTOM, True),
    ("near", FAR_A, FAR_B, False),
    ("far from", FAR_A, FAR_B, True),
    ("far from", ADJACENT_R, ADJACENT_L, False),
]


@pytest.mark.parametrize(("relation", "subject", "obj", "expected"), HAND_CASES)
def test_relation_definitions_on_hand_made_boxes(relation, subject, obj, expected):
    assert relation_holds(relation, subject, obj) is expected


def test_every_relation_is_a_vsr_relation_and_unknown_ones_fail():
    assert set(RELATIONS) <= set(RELATION_TO_CATEGORY)
    assert {RELATION_TO_CATEGORY[r] for r in RELATIONS} == {"Projective", "Adjacency", "Proximity"}
    with pytest.raises(ValueError, match="unknown synthetic relation"):
        relation_holds("behind", LEFT, RIGHT)


# --- the written set ----------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(synthetic, tmp_path):
    again = _files(_generate(tmp_path / "again"))
    first = _files(synthetic)
    assert sorted(first) == sorted(again)
    assert len([name for name in first if name.endswith(".png")]) == sum(COUNTS.values())
    assert [name for name in first if first[name] != again[name]] == []

    other = _files(_generate(tmp_path / "other", seed=SEED + 1))
    assert sorted(other) == sorted(first)  # same names, different content
    for split in ("train", "dev", "test"):
        name = f"splits/random/{split}.jsonl"
        assert other[name] != first[name]
    changed_images = [name for name in first if name.endswith(".png") and other[name] != first[name]]
    assert len(changed_images) > 0.9 * sum(COUNTS.values())


def test_overwrite_is_explicit_and_reproduces_the_set(synthetic, tmp_path):
    out = _generate(tmp_path / "set")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _generate(out)
    generate(out, 2, 2, 2, seed=SEED, image_size=SIZE, overwrite=True)
    assert len(list((out / "images").iterdir())) == 6  # the old, larger set is gone
    generate(out, COUNTS["train"], COUNTS["dev"], COUNTS["test"], seed=SEED, image_size=SIZE, overwrite=True)
    assert _files(out) == _files(synthetic)


def test_labels_agree_with_the_boxes_in_the_coco_files(synthetic, cocos):
    seen = Counter()
    for split in ("train", "dev", "test"):
        coco_name = "train2017" if split == "train" else "val2017"
        coco = cocos[coco_name]
        by_name = {image["file_name"]: image for image in coco.dataset["images"]}
        for row in _rows(synthetic, split):
            assert row["image_link"] == f"http://images.cocodataset.org/{coco_name}/{row['image']}"
            image = by_name[row["image"]]
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            names = [coco.loadCats([a["category_id"]])[0]["name"] for a in annotations]
            assert len(annotations) in (2, 3) and len(set(names)) == len(names)  # "the cat" names one box
            boxes = dict(zip(names, (a["bbox"] for a in annotations)))
            subject, obj = boxes[row["subj"]], boxes[row["obj"]]
            assert relation_holds(row["relation"], subject, obj) is bool(row["label"]), row
            assert relation_is_clear(row["relation"], subject, obj), row
            seen[row["relation"], row["label"]] += 1
    assert set(seen) == {(relation, label) for relation in RELATIONS for label in (0, 1)}


def test_coco_files_list_every_image_with_real_category_ids(synthetic, cocos):
    assert {c["id"]: c["name"] for c in cocos["train2017"].dataset["categories"]} == COCO_IDS
    assert {c.id: c.name for c in CATEGORIES} == COCO_IDS
    train_images = {image["file_name"] for image in cocos["train2017"].dataset["images"]}
    val_images = {image["file_name"] for image in cocos["val2017"].dataset["images"]}
    assert train_images == {row["image"] for row in _rows(synthetic, "train")}
    assert val_images == {row["image"] for split in ("dev", "test") for row in _rows(synthetic, split)}
    for coco in cocos.values():
        for annotation in coco.dataset["annotations"]:
            x, y, w, h = annotation["bbox"]
            assert annotation["iscrowd"] == 0 and 0 < annotation["area"] <= w * h
            assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE


def test_drawn_pixels_fill_exactly_their_boxes(synthetic, cocos):
    """Each category has its own colour: its pixels must span exactly the annotated box."""
    colours = {c.id: np.array(c.colour) for c in CATEGORIES}
    for coco in cocos.values():
        for image in coco.dataset["images"]:
            pixels = np.asarray(Image.open(synthetic / "images" / image["file_name"]).convert("RGB"))
            assert pixels.shape == (SIZE, SIZE, 3)
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
                ys, xs = np.nonzero((pixels == colours[annotation["category_id"]]).all(axis=-1))
                extent = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
                assert extent == annotation["bbox"], (image["file_name"], annotation)


def test_labels_are_balanced_per_split_and_per_relation(synthetic):
    for split, n in COUNTS.items():
        labels = [row["label"] for row in _rows(synthetic, split)]
        assert len(labels) == n
        assert abs(labels.count(1) - labels.count(0)) <= 1
    per_relation = Counter((row["relation"], row["label"]) for row in _rows(synthetic, "train"))
    assert set(per_relation.values()) == {2}  # 40 rows = 10 relations x 2 labels x 2


def test_captions_parse_back_to_subject_relation_object(synthetic):
    for split in COUNTS:
        for row in _rows(synthetic, split):
            assert row["caption"] == f"The {row['subj']} is {row['relation']} the {row['obj']}."
            assert parse_caption(row["caption"]) == (row["subj"], row["relation"], row["obj"])
    assert parse_caption("The cat is at the left side of the dog.") == ("cat", "at the left side of", "dog")
    with pytest.raises(ValueError):
        parse_caption("The cat is behind the dog.")


def test_rows_carry_the_vsr_fields(synthetic):
    vsr_fields = list(load_split("random", "dev", PACKAGED_ANNOTATIONS)[0])
    for row in _rows(synthetic, "dev"):
        assert set(row) == set(vsr_fields) | {"subj", "obj"}
        assert row["label"] in (0, 1) and isinstance(row["annotator_id"], int)


def test_rows_load_through_the_real_vsr_random_dev_task(synthetic, monkeypatch):
    import lmms_eval.models  # noqa: F401  (loads our entry point, which registers the task folder)
    from lmms_eval.tasks import TaskManager

    monkeypatch.setenv("VSR_DATA_DIR", str(synthetic))
    monkeypatch.delenv("VSR_IMAGE_DIR", raising=False)
    loaded = TaskManager().load_task_or_group(["vsr_random_dev", "vsr_random_test"])
    assert {name: len(task.test_docs()) for name, task in loaded.items()} == {
        "vsr_random_dev": COUNTS["dev"],
        "vsr_random_test": COUNTS["test"],
    }
    task = loaded["vsr_random_dev"]
    rows = _rows(synthetic, "dev")
    for doc, row in zip(task.test_docs(), rows):
        assert (doc["image"], doc["caption"], doc["label"], doc["subj"], doc["obj"]) == (
            row["image"],
            row["caption"],
            row["label"],
            row["subj"],
            row["obj"],
        )
        assert doc["meta_category"] == RELATION_TO_CATEGORY[row["relation"]]
        assert task.doc_to_target(doc) == ("True" if row["label"] else "False")
    doc = task.test_docs()[0]
    images = task.doc_to_visual(doc)
    assert len(images) == 1 and images[0].mode == "RGB" and images[0].size == (SIZE, SIZE)
    on_disk = np.asarray(Image.open(synthetic / "images" / rows[0]["image"]).convert("RGB"))
    assert np.array_equal(np.asarray(images[0]), on_disk)


def test_train_skew_skews_only_the_train_split_and_keeps_labels_balanced(tmp_path):
    categories = ["cat", "dog", "car"]
    relations = ["left of", "right of"]
    out = tmp_path / "skewed"
    generate(out, 200, 60, 10, seed=SEED, image_size=SIZE, relations=relations, categories=categories, train_skew=0.8)
    order = {name: index for index, name in enumerate(categories)}

    def canonical(row: dict) -> bool:
        return row["relation"] == relations[0] and order[row["subj"]] < order[row["obj"]]

    train, dev = _rows(out, "train"), _rows(out, "dev")
    # 160 rows are canonical by construction; of the other 40, the left-of half are canonical by chance or not
    assert 160 <= sum(canonical(row) for row in train) <= 180
    assert Counter(row["relation"] for row in train) == {"left of": 180, "right of": 20}
    assert Counter(row["relation"] for row in dev) == {"left of": 30, "right of": 30}  # dev is never skewed
    for rows in (train, dev):
        assert abs(sum(row["label"] for row in rows) * 2 - len(rows)) <= 1
        for relation in relations:  # the caption alone still says nothing about the label
            labels = [row["label"] for row in rows if row["relation"] == relation]
            assert abs(sum(labels) * 2 - len(labels)) <= 1
    # the skew is in the caption form, not in the label: canonical rows are still half true
    skewed = [row for row in train if canonical(row)]
    assert abs(sum(row["label"] for row in skewed) * 2 - len(skewed)) <= 2
    manifest = json.loads((out / "synthetic.json").read_text())
    assert manifest["train_skew"] == 0.8 and manifest["categories"] == categories


def test_categories_restrict_what_is_drawn_and_two_leave_no_room_for_a_distractor(tmp_path):
    out = tmp_path / "two"
    generate(out, 20, 10, 4, seed=SEED, image_size=SIZE, relations=["left of"], categories=["cat", "dog"])
    for split in ("train", "dev", "test"):
        assert {row["subj"] for row in _rows(out, split)} | {row["obj"] for row in _rows(out, split)} == {"cat", "dog"}
    coco = json.loads((out / "annotations" / "instances_train2017.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert Counter(a["image_id"] for a in coco["annotations"]) == Counter({i: 2 for i in range(1, 21)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"categories": ["cat"]}, "at least two distinct names"),
        ({"categories": ["cat", "horse"]}, "at least two distinct names"),
        ({"train_skew": 1.5}, "train_skew must be between 0 and 1"),
    ],
)
def test_bad_categories_or_skew_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "bad", 4, 2, 2, seed=SEED, image_size=SIZE, **kwargs)
