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
from vsr_tasks.synthetic.scene import CATEGORIES, coco_box, sample_scene

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


def plan_split(n: int, relations: Sequence[str], rng: random.Random) -> list[tuple[str, bool]]:
    """``n`` (relation, label) pairs: labels alternate, relations cycle per pair, then the order is shuffled."""
    plan = [(relations[(index // 2) % len(relations)], index % 2 == 0) for index in range(n)]
    rng.shuffle(plan)
    return plan


def _coco_categories() -> list[dict]:
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CATEGORIES]


def _empty_coco(coco_split: str) -> dict:
    return {
        "info": {"description": f"vsr_tasks.synthetic boxes ({coco_split} naming)", "version": "1.0"},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": _coco_categories(),
    }


def _generate_split(
    out: Path, split: str, n: int, seed: int, side: int, relations: Sequence[str], coco: dict
) -> list[dict]:
    rng = random.Random(f"vsr_tasks.synthetic:{seed}:{split}")
    coco_split = COCO_SPLIT[split]
    rows = []
    for index, (relation, label) in enumerate(plan_split(n, relations, rng)):
        scene = sample_scene(rng, relation, label, side)
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
) -> dict:
    """Write the set under ``out`` and return its manifest (also written to ``out/synthetic.json``)."""
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
    _prepare(out, overwrite)
    cocos = {coco_split: _empty_coco(coco_split) for coco_split in sorted(set(COCO_SPLIT.values()))}
    labels = {}
    for split in SPLITS:
        rows = _generate_split(out, split, counts[split], seed, image_size, relations, cocos[COCO_SPLIT[split]])
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
        "categories": [c.name for c in CATEGORIES],
        "counts": counts,
        "labels": labels,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest
