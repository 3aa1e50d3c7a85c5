"""The rows fine-tuning sees: a VSR train split, its held-out slice, and their image files.

Model selection uses a slice of the TRAIN split (``--eval_fraction``, drawn with
a fixed seed), so dev and test stay unseen until the final evaluation. Image
files are checked before training starts: a missing file should fail in the first
second, not hours into a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsr_tasks import data as vsr_data
from vsr_tasks.heldout import DEFAULT_FRACTION, DEFAULT_SEED, held_out_positions


@dataclass(frozen=True)
class Example:
    """One training row: where it came from (its line in train.jsonl), its image, caption and label."""

    index: int
    image: Path
    caption: str
    label: int


@dataclass
class Splits:
    train: list[Example]
    held_out: list[Example]
    missing_images: list[str]


def resolve_image_dir(vsr_data_dir: str | Path | None, image_dir: str | Path | None) -> Path:
    """``--image_dir``, else ``$VSR_IMAGE_DIR``, else ``VSR_DATA_DIR/images``."""
    if image_dir is not None:
        return Path(image_dir)
    if os.environ.get(vsr_data.IMAGE_DIR_VARIABLE, "").strip():
        return vsr_data.image_dir()
    return Path(vsr_data_dir) / "images"


def load_splits(
    vsr_data_dir: str | Path | None,
    dataset_type: str,
    image_dir: str | Path | None = None,
    eval_fraction: float = DEFAULT_FRACTION,
    eval_split_seed: int = DEFAULT_SEED,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    skip_missing_images: bool = False,
) -> Splits:
    """Train and held-out examples of ``splits/{dataset_type}/train.jsonl`` with their image files resolved."""
    rows = vsr_data.load_split(dataset_type, "train", Path(vsr_data_dir) if vsr_data_dir else None)
    folder = resolve_image_dir(vsr_data_dir, image_dir)
    if not folder.is_dir():
        raise vsr_data.VSRDataError(
            f"image folder {folder} does not exist: pass --image_dir or set {vsr_data.IMAGE_DIR_VARIABLE}"
        )
    train_positions, held_out_positions_ = held_out_positions(len(rows), eval_fraction, eval_split_seed)
    if max_train_samples is not None:
        train_positions = train_positions[:max_train_samples]
    if max_eval_samples is not None:
        held_out_positions_ = held_out_positions_[:max_eval_samples]
    missing: list[str] = []
    train = _examples(rows, train_positions, folder, missing)
    held_out = _examples(rows, held_out_positions_, folder, missing)
    if missing and not skip_missing_images:
        shown = "; ".join(missing[:3])
        raise vsr_data.VSRDataError(
            f"{len(missing)} image file(s) missing in {folder}, e.g. {shown}. Fix --image_dir / "
            f"${vsr_data.IMAGE_DIR_VARIABLE}, or pass --skip_missing_images to drop those rows"
        )
    if not train:
        raise vsr_data.VSRDataError(f"no training rows left in {dataset_type}/train.jsonl (all images missing?)")
    return Splits(train=train, held_out=held_out, missing_images=missing)


def _examples(rows: list[dict], positions: np.ndarray, folder: Path, missing: list[str]) -> list[Example]:
    examples = []
    for position in positions.tolist():
        row = rows[position]
        try:
            image = vsr_data.image_path(row, folder)
        except vsr_data.VSRDataError:
            missing.append(str(folder / row["image"]))
            continue
        examples.append(Example(index=position, image=image, caption=row["caption"], label=int(row["label"])))
    return examples
