"""COCO's boxes for VSR rows: which category a caption's noun names, where its boxes are, which tokens they cover.

VSR's images are COCO 2017 images, and its nouns COCO category names, so the objects a caption is about have boxes in
``instances_{train,val}2017.json``; a token is evidence when its cell of the image overlaps one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from models.vea_layers import COCO_ANNOTATIONS_VARIABLE
from profiling.errors import ProfilingError

ANNOTATION_FILES = {"train2017": "instances_train2017.json", "val2017": "instances_val2017.json"}
# VSR nouns are COCO category names already; these spellings are mapped for other VSR-format data.
NOUN_ALIASES = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "tv monitor": "tv",
    "tvmonitor": "tv",
    "television": "tv",
    "hair dryer": "hair drier",
    "ball": "sports ball",
    "table": "dining table",
    "plant": "potted plant",
    "phone": "cell phone",
    "cellphone": "cell phone",
    "doughnut": "donut",
    "racket": "tennis racket",
}


def coco_category(noun: str, category_names: set[str]) -> str | None:
    """The COCO category a VSR noun names, or None."""
    noun = " ".join(noun.lower().split())
    for candidate in (noun, NOUN_ALIASES.get(noun), noun[:-1] if noun.endswith("s") else None):
        if candidate and candidate in category_names:
            return candidate
    return None


def coco_split_of(row: dict) -> str:
    """``train2017`` or ``val2017`` from the row's ``image_link`` (VSR images are COCO 2017 images)."""
    link = row.get("image_link") or ""
    for split in ANNOTATION_FILES:
        if f"/{split}/" in link:
            return split
    raise ProfilingError(f"row for image {row.get('image')!r} has no COCO train2017/val2017 image_link: {link!r}")


def coco_image_id(row: dict) -> int:
    stem = Path(row["image"]).stem
    if not stem.isdigit():
        raise ProfilingError(f"image name {row['image']!r} is not a COCO id (12 digits)")
    return int(stem)


class CocoBoxes:
    """Boxes by image and category from ``instances_{train,val}2017.json``, each file loaded on first use."""

    def __init__(self, annotations_dir: str | Path) -> None:
        self.folder = Path(annotations_dir)
        if not self.folder.is_dir():
            raise ProfilingError(
                f"COCO annotations folder not found: {self.folder} (it must hold "
                f"{' and '.join(ANNOTATION_FILES.values())}; set coco_annotations_dir or {COCO_ANNOTATIONS_VARIABLE})"
            )
        self._loaded: dict[str, object] = {}

    def coco(self, split: str):
        if split not in self._loaded:
            path = self.folder / ANNOTATION_FILES[split]
            if not path.is_file():
                raise ProfilingError(
                    f"COCO annotation file not found: {path} (expected {ANNOTATION_FILES[split]} in "
                    f"{self.folder}; download COCO 2017 annotations_trainval2017.zip)"
                )
            import contextlib
            import io

            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                self._loaded[split] = COCO(str(path))
        return self._loaded[split]

    def category_names(self, split: str) -> set[str]:
        coco = self.coco(split)
        return {category["name"] for category in coco.loadCats(coco.getCatIds())}

    def boxes(self, split: str, image_id: int, categories: Sequence[str]) -> list[list[float]]:
        """``[x, y, w, h]`` boxes (original pixels) of the given categories in one image."""
        coco = self.coco(split)
        category_ids = coco.getCatIds(catNms=list(categories))
        if not category_ids:
            return []
        annotation_ids = coco.getAnnIds(imgIds=[image_id], catIds=category_ids, iscrowd=None)
        return [list(annotation["bbox"]) for annotation in coco.loadAnns(annotation_ids)]


def token_labels(
    boxes: Sequence[Sequence[float]],
    region: tuple[float, float, float, float],
    grid: tuple[int, int],
) -> torch.Tensor:
    """``[grid_h, grid_w]`` bool: the token's cell, mapped back to original pixels, overlaps a box.

    ``region`` is ``(x0, y0, x1, y1)``, the part of the image file (in its pixels) that the grid covers: the whole
    image for Qwen's processors (a resized copy), the centre square for LLaVA-1.5's crop. Each of the grid's cells
    covers an equal share of it. Overlap means a positive area in common (a box edge touching a cell edge does not
    count).
    """
    x0, y0, x1, y1 = region
    grid_h, grid_w = grid
    cell_w, cell_h = (x1 - x0) / grid_w, (y1 - y0) / grid_h
    cell_x0 = x0 + torch.arange(grid_w, dtype=torch.float64) * cell_w
    cell_y0 = y0 + torch.arange(grid_h, dtype=torch.float64) * cell_h
    cell_x1, cell_y1 = cell_x0 + cell_w, cell_y0 + cell_h
    labels = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    for x, y, w, h in boxes:
        columns = (cell_x0 < x + w) & (cell_x1 > x)
        rows = (cell_y0 < y + h) & (cell_y1 > y)
        labels |= rows[:, None] & columns[None, :]
    return labels
