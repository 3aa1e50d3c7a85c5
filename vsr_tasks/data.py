"""Where VSR lives on disk, and reading it with errors that say what to fix.

Layout (the VSR repository's ``data/`` folder)::

    $VSR_DATA_DIR/splits/{random,zeroshot}/{train,dev,test}.jsonl
    $VSR_DATA_DIR/images/             # or $VSR_IMAGE_DIR: flat, or COCO train2017/ + val2017/

The split files also ship inside the package (``vsr_tasks/annotations/``, VSR's files gzip-compressed, with their
licence and checksums): whenever ``VSR_DATA_DIR`` is unset or has no ``splits/``, the rows come from there, so a user
supplies only the images.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

DATA_DIR_VARIABLE = "VSR_DATA_DIR"
IMAGE_DIR_VARIABLE = "VSR_IMAGE_DIR"
DATASET_TYPES = ("random", "zeroshot")
SPLITS = ("train", "dev", "test")
REQUIRED_FIELDS = ("image", "caption", "label", "relation")
PACKAGED_ANNOTATIONS = Path(__file__).resolve().parent / "annotations"  # VSR's splits/ and relation table


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
        f"{DATA_DIR_VARIABLE} is not set, nor {IMAGE_DIR_VARIABLE}: no folder holds VSR's images. "
        f"export {DATA_DIR_VARIABLE}=/path/to/visual-spatial-reasoning/data (its images/ folder), or "
        f"{IMAGE_DIR_VARIABLE}=/path/to/images (flat, or COCO's train2017/ + val2017/). The split files ship with "
        "the plugin."
    )


def annotations_dir(root: Path | None = None) -> Path:
    """The folder whose ``splits/`` the rows are read from: ``root`` (else VSR_DATA_DIR) when it holds ``splits/``,
    else the packaged copy of VSR's files."""
    root = root if root is not None else data_dir()
    if root is not None and (Path(root) / "splits").is_dir():
        return Path(root)
    return PACKAGED_ANNOTATIONS


def split_path(root: Path, dataset_type: str, split: str) -> Path:
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {dataset_type!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    plain = Path(root) / "splits" / dataset_type / f"{split}.jsonl"
    compressed = plain.with_name(plain.name + ".gz")  # the packaged copy
    return compressed if compressed.is_file() and not plain.is_file() else plain


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a VSR jsonl file; a bad line fails with the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise VSRDataError(f"VSR split file not found: {path}")
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
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
    """Rows of one split: from ``root`` (else VSR_DATA_DIR) when it holds ``splits/``, else the packaged copy."""
    return read_rows(split_path(annotations_dir(root), dataset_type, split))


def image_dir(root: Path | None = None) -> Path:
    """VSR_IMAGE_DIR, else ``images/`` in ``root`` (else VSR_DATA_DIR)."""
    override = _env_path(IMAGE_DIR_VARIABLE)
    if override is not None:
        if not override.is_dir():
            raise VSRDataError(f"{IMAGE_DIR_VARIABLE}={override} does not exist or is not a folder")
        return override
    root = root if root is not None else data_dir()
    if root is None:
        raise VSRDataError(unset_data_dir_message())
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
