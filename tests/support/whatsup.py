"""WhatsUp data in the official format (whatsup_vlms' annotation JSONs and image folders), with generated images.

Captions follow the official phrasing ("A beer bottle on a armchair", first option correct); each image shows the
subject (a filled square) where its relation puts it against the object (an outlined square).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OBJECTS = ("beer bottle", "mug", "dog", "cup", "knife", "dining table")
TWO = {  # relation in the file name or answer -> the caption's phrase
    "left_of": "to the left of", "right_of": "to the right of", "on": "on", "under": "under",
    "in-front_of": "in front of", "behind": "behind", "above": "above", "below": "below",
}  # fmt: skip
CONTROLLED = {"a": ("left_of", "right_of", "on", "under"), "b": ("left_of", "right_of", "in-front_of", "behind")}
QA = {
    "coco_qa_one_obj": ("left", "right", "top", "bottom"),
    "coco_qa_two_obj": ("left_of", "right_of", "above", "below"),
    "vg_qa_one_obj": ("left", "right", "front", "behind", "top", "bottom"),
    "vg_qa_two_obj": ("left_of", "right_of", "in-front_of", "behind", "above"),
}
OFFSETS = {"left_of": (-1, 0), "left": (-1, 0), "right_of": (1, 0), "right": (1, 0), "on": (0, -1), "above": (0, -1),
           "top": (0, -1), "under": (0, 1), "below": (0, 1), "bottom": (0, 1), "in-front_of": (0, 0.5),
           "front": (0, 0.5), "behind": (0, -0.5)}  # fmt: skip


def _image(relation: str, rng: np.random.Generator, path: Path, side: int = 64) -> None:
    picture = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(picture)
    centre, step, size = side // 2, side // 4, side // 8
    dx, dy = OFFSETS[relation]
    draw.rectangle([centre - size, centre - size, centre + size, centre + size], outline=(0, 0, 0), width=2)
    x, y = int(centre + dx * step), int(centre + dy * step)
    draw.rectangle([x - size, y - size, x + size, y + size], fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def _two_caption(subject: str, relation: str, obj: str) -> str:
    return f"A {subject} {TWO[relation]} a {obj}"


def write_whatsup(root: Path, per_relation: int = 2, seed: int = 0) -> Path:
    """All six subsets, ``per_relation`` rows of each relation; returns ``root`` (the WHATSUP_DATA_DIR)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for subset, relations in CONTROLLED.items():
        folder = "controlled_images" if subset == "a" else "controlled_clevr"
        rows = []
        for k in range(per_relation):
            for relation in relations:
                subject, obj = OBJECTS[(k + len(rows)) % len(OBJECTS)], OBJECTS[(k + len(rows) + 1) % len(OBJECTS)]
                name = f"{subject.replace(' ', '-')}_{relation}_{obj.replace(' ', '-')}.jpeg"
                _image(relation, rng, root / folder / name, 64)
                others = [r for r in relations if r != relation]
                captions = [_two_caption(subject, r, obj) for r in [relation, *others]]
                rows.append({"image_path": f"data/{folder}/{name}", "caption_options": captions})
        annotation = "controlled_images_dataset.json" if subset == "a" else "controlled_clevr_dataset.json"
        (root / annotation).write_text(json.dumps(rows))
    image_id = 100
    for name, relations in QA.items():
        rows = []
        for _ in range(per_relation):
            for relation in relations:
                image_id += 1
                subject, obj = OBJECTS[image_id % len(OBJECTS)], OBJECTS[(image_id + 2) % len(OBJECTS)]
                wrong = relations[(relations.index(relation) + 1) % len(relations)]
                if name.endswith("one_obj"):
                    captions = [f"A {subject} on the {relation}", f"A {subject} on the {wrong}"]
                else:
                    captions = [_two_caption(subject, relation, obj), _two_caption(subject, wrong, obj)]
                path = root / ("val2017" if name.startswith("coco") else "vg_images")
                path = path / (f"{image_id:012d}.jpg" if name.startswith("coco") else f"{image_id}.jpg")
                _image(relation, rng, path, 64)
                rows.append([image_id, *captions])
        (root / f"{name}.json").write_text(json.dumps(rows))
    return root
