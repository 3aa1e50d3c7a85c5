"""Writing a synthetic set in VSR's folder layout, with COCO boxes, byte for byte reproducible.

Layout written under ``OUT``::

    splits/random/{train,dev,test}.jsonl        # VSR rows (+ subj/obj, as in the zeroshot split)
    images/NNNNNNNNNNNN.png                     # flat, COCO-style 12-digit names
    annotations/instances_train2017.json        # boxes of the train images
    annotations/instances_val2017.json          # boxes of the dev and test images
    synthetic.json                              # how the set was made (no timestamps)

Each split draws from its own random stream (seeded by the seed and the split
name) and its own block of image ids, so the dev and test sets do not change when
only ``n_train`` does. Labels are exactly balanced per split (the counts differ by
at most one) and per relation, so a caption alone says nothing about its label.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from vsr_tasks.categories import RELATION_TO_CATEGORY
from vsr_tasks.synthetic.geometry import RELATIONS, caption
from vsr_tasks.synthetic.render import background, outline, polygon_area, render, save_png
from vsr_tasks.synthetic.scene import CATEGORIES, Category, coco_box, sample_scene

SPLITS = ("train", "dev", "test")
COCO_SPLIT = {"train": "train2017", "dev": "val2017", "test": "val2017"}
ID_BASE = {"train": 0, "dev": 1_000_000, "test": 2_000_000}
MAX_ROWS_PER_SPLIT = 999_999
MIN_IMAGE_SIZE = 64
MANIFEST = "synthetic.json"
_IMAGE_NAME = re.compile(r"^\d{12}\.png$")


def image_name(image_id: int) -> str:
    """COCO-style file name: ids are zero-padded to 12 digits."""
    return f"{image_id:012d}.png"


def plan_split(n: int, relations: Sequence[str], rng: random.Random, skew: float = 0.0) -> list[tuple[str, bool, bool]]:
    """``n`` (relation, label, canonical) triples: labels alternate, relations cycle per pair, then the order is
    shuffled. The first ``round(skew * n)`` rows (before shuffling) are canonical: the first relation, the
    subject drawn in canonical order (see :func:`generate`'s ``train_skew``)."""
    n_canonical = round(skew * n)
    plan = []
    for index in range(n):
        label = index % 2 == 0
        if index < n_canonical:
            plan.append((relations[0], label, True))
        else:
            pair = (index - n_canonical) // 2
            plan.append((relations[pair % len(relations)], label, False))
    rng.shuffle(plan)
    return plan


def _coco_categories(categories: Sequence[Category]) -> list[dict]:
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in categories]


def _empty_coco(coco_split: str, categories: Sequence[Category]) -> dict:
    return {
        "info": {"description": f"vsr_tasks.synthetic boxes ({coco_split} naming)", "version": "1.0"},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": _coco_categories(categories),
    }


def _generate_split(
    out: Path,
    split: str,
    n: int,
    seed: int,
    side: int,
    relations: Sequence[str],
    coco: dict,
    categories: Sequence[Category],
    skew: float,
) -> list[dict]:
    rng = random.Random(f"vsr_tasks.synthetic:{seed}:{split}")
    coco_split = COCO_SPLIT[split]
    rows = []
    for index, (relation, label, canonical) in enumerate(plan_split(n, relations, rng, skew)):
        scene = sample_scene(rng, relation, label, side, categories, canonical)
        image_id = ID_BASE[split] + index + 1
        name = image_name(image_id)
        save_png(render(scene, side, background(rng)), out / "images" / name)
        coco["images"].append(
            {
                "id": image_id,
                "file_name": name,
                "width": side,
                "height": side,
                "coco_url": f"http://images.cocodataset.org/{coco_split}/{name}",
                "license": 0,
            }
        )
        for number, (category, box) in enumerate(scene.objects, start=1):
            polygon = outline(category.shape, box)
            coco["annotations"].append(
                {
                    "id": image_id * 10 + number,
                    "image_id": image_id,
                    "category_id": category.id,
                    "bbox": coco_box(box),
                    "area": polygon_area(polygon),
                    "segmentation": [polygon],
                    "iscrowd": 0,
                }
            )
        subject, obj = scene.objects[scene.subject][0].name, scene.objects[scene.object][0].name
        rows.append(
            {
                "image": name,
                "image_link": f"http://images.cocodataset.org/{coco_split}/{name}",
                "caption": caption(subject, relation, obj),
                "label": int(label),
                "relation": relation,
                "subj": subject,
                "obj": obj,
                "annotator_id": 0,
                "vote_true_validator_id": "[]",
                "vote_false_validator_id": "[]",
                "reference_frame": None,
            }
        )
    return rows


def _choose_categories(names: Sequence[str] | None) -> tuple[Category, ...]:
    if names is None:
        return CATEGORIES
    by_name = {c.name: c for c in CATEGORIES}
    unknown = [name for name in names if name not in by_name]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"categories must be at least two distinct names from {list(by_name)}, got {list(names)}")
    return tuple(by_name[name] for name in names)


def _prepare(out: Path, overwrite: bool) -> None:
    """Refuse to mix with other files; with ``overwrite``, clear only a set this generator wrote."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace a synthetic set written there")
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} has no {MANIFEST}: not a synthetic set, refusing to overwrite it")
        for split in SPLITS:
            (out / "splits" / "random" / f"{split}.jsonl").unlink(missing_ok=True)
        for coco_split in set(COCO_SPLIT.values()):
            (out / "annotations" / f"instances_{coco_split}.json").unlink(missing_ok=True)
        if (out / "images").is_dir():
            for path in (out / "images").iterdir():
                if _IMAGE_NAME.match(path.name):
                    path.unlink()
        (out / MANIFEST).unlink()
    for folder in ("images", "annotations", "splits/random"):
        (out / folder).mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value) + "\n", encoding="utf-8")


def generate(
    out: str | Path,
    n_train: int,
    n_dev: int,
    n_test: int,
    seed: int = 0,
    image_size: int = 224,
    relations: Sequence[str] = RELATIONS,
    overwrite: bool = False,
    categories: Sequence[str] | None = None,
    train_skew: float = 0.0,
) -> dict:
    """Write the set under ``out`` and return its manifest (also written to ``out/synthetic.json``).

    ``categories``: names from :data:`CATEGORIES` to draw (default all; at least two), in the order that
    defines "canonical". ``train_skew``: the share of TRAIN rows in one canonical caption form, the first of
    ``relations`` with the subject the pair's earlier category. A model trained from scratch cannot start on a
    balanced set: the label is an exclusive-or of what the caption says and what the image shows, and
    neither alone correlates with it, so gradient descent sits at chance. In a skewed train split the image
    alone predicts most labels, which gives learning a foothold; the caption is still needed for the rest.
    Dev and test are never skewed, so a model that ignores the caption scores 50% there.
    """
    out = Path(out)
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, n in counts.items():
        if not 0 <= n <= MAX_ROWS_PER_SPLIT:
            raise ValueError(f"n_{split} must be between 0 and {MAX_ROWS_PER_SPLIT}, got {n}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    relations = tuple(relations)
    unknown = [r for r in relations if r not in RELATIONS or r not in RELATION_TO_CATEGORY]
    if not relations or unknown or len(set(relations)) != len(relations):
        raise ValueError(f"relations must be distinct names from {RELATIONS}, got {list(relations)}")
    chosen = _choose_categories(categories)
    if not 0.0 <= train_skew <= 1.0:
        raise ValueError(f"train_skew must be between 0 and 1, got {train_skew}")
    _prepare(out, overwrite)
    cocos = {coco_split: _empty_coco(coco_split, chosen) for coco_split in sorted(set(COCO_SPLIT.values()))}
    labels = {}
    for split in SPLITS:
        skew = train_skew if split == "train" else 0.0
        coco = cocos[COCO_SPLIT[split]]
        rows = _generate_split(out, split, counts[split], seed, image_size, relations, coco, chosen, skew)
        with (out / "splits" / "random" / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        labels[split] = {"true": sum(row["label"] for row in rows), "false": sum(1 - row["label"] for row in rows)}
    for coco_split, coco in cocos.items():
        _write_json(out / "annotations" / f"instances_{coco_split}.json", coco)
    manifest = {
        "generator": "vsr_tasks.synthetic",
        "seed": seed,
        "image_size": image_size,
        "relations": list(relations),
        "categories": [c.name for c in chosen],
        "train_skew": train_skew,
        "counts": counts,
        "labels": labels,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest
