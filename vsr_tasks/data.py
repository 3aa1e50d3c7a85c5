"""Where VSR lives on disk, and reading it with errors that say what to fix.

Layout (the VSR repository's ``data/`` folder)::

    $VSR_DATA_DIR/splits/{random,zeroshot}/{train,dev,test}.jsonl
    $VSR_DATA_DIR/images/             # or $VSR_IMAGE_DIR: flat, or COCO train2017/ + val2017/

Without ``VSR_DATA_DIR`` the rows come from the hub datasets
``cambridgeltl/vsr_{random,zeroshot}`` (online only); images always come from disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR_VARIABLE = "VSR_DATA_DIR"
IMAGE_DIR_VARIABLE = "VSR_IMAGE_DIR"
DATASET_TYPES = ("random", "zeroshot")
SPLITS = ("train", "dev", "test")
REQUIRED_FIELDS = ("image", "caption", "label", "relation")
HUB_DATASETS = {"random": "cambridgeltl/vsr_random", "zeroshot": "cambridgeltl/vsr_zeroshot"}
HUB_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


class VSRDataError(RuntimeError):
    """VSR data is missing or malformed; the message says which variable, file or line."""


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def data_dir(required: bool = False) -> Path | None:
    """The folder named by VSR_DATA_DIR, checked to exist; None when unset (and not required)."""
    path = _env_path(DATA_DIR_VARIABLE)
    if path is None:
        if required:
            raise VSRDataError(unset_data_dir_message())
        return None
    if not path.is_dir():
        raise VSRDataError(f"{DATA_DIR_VARIABLE}={path} does not exist or is not a folder")
    return path


def unset_data_dir_message() -> str:
    return (
        f"{DATA_DIR_VARIABLE} is not set and the hub datasets cannot be reached (offline). "
        f"Point it at VSR's data folder: export {DATA_DIR_VARIABLE}=/path/to/visual-spatial-reasoning/data "
        "(it must hold splits/{random,zeroshot}/{train,dev,test}.jsonl and images/)."
    )


def split_path(root: Path, dataset_type: str, split: str) -> Path:
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {dataset_type!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(root) / "splits" / dataset_type / f"{split}.jsonl"


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a VSR jsonl file; a bad line fails with the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise VSRDataError(f"VSR split file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise VSRDataError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            missing = [field for field in REQUIRED_FIELDS if field not in row] if isinstance(row, dict) else ["object"]
            if missing:
                raise VSRDataError(f"{path}:{line_number}: row lacks field(s) {', '.join(missing)}")
            if row["label"] not in (0, 1, True, False):
                raise VSRDataError(f"{path}:{line_number}: label must be 0 or 1, got {row['label']!r}")
            rows.append(row)
    return rows


def load_split(dataset_type: str, split: str, root: Path | None = None) -> list[dict]:
    """Rows of one split from VSR_DATA_DIR (or ``root``)."""
    root = root if root is not None else data_dir(required=True)
    return read_rows(split_path(root, dataset_type, split))


def image_dir(root: Path | None = None) -> Path:
    """VSR_IMAGE_DIR, else ``images/`` beside the splits."""
    override = _env_path(IMAGE_DIR_VARIABLE)
    if override is not None:
        if not override.is_dir():
            raise VSRDataError(f"{IMAGE_DIR_VARIABLE}={override} does not exist or is not a folder")
        return override
    root = root if root is not None else data_dir()
    if root is None:
        raise VSRDataError(
            f"No image folder: set {IMAGE_DIR_VARIABLE} (a flat folder of COCO images, or COCO's "
            f"train2017/ + val2017/) or {DATA_DIR_VARIABLE} (with an images/ folder)."
        )
    return root / "images"


def image_path(row: dict, folder: Path) -> Path:
    """The image file of a row: ``folder/NAME``, else COCO's ``folder/{train,val}2017/NAME`` from image_link."""
    name = row["image"]
    candidates = [folder / name]
    link = row.get("image_link") or ""
    for coco_split in ("train2017", "val2017"):
        if f"/{coco_split}/" in link:
            candidates.append(folder / coco_split / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise VSRDataError(
        f"image {name} not found (looked for {tried}); set {IMAGE_DIR_VARIABLE} to the COCO image folder"
    )
