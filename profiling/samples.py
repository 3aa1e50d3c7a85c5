"""Which VSR train rows can profile: their caption parsed, both nouns COCO categories, a box of either in the image.

Train rows only (choosing layers on dev or test rows would leak the evaluation data); rows drawn in a seeded random
order, every skipped row counted by reason.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from profiling.coco import CocoBoxes, coco_category, coco_image_id, coco_split_of
from profiling.errors import ProfilingError

PROFILE_SPLIT = "train"


def parse_caption(caption: str, relation: str) -> tuple[str, str] | None:
    """``The SUBJ is RELATION the OBJ.`` -> ``(subj, obj)`` (also ``are``, and verb relations such as
    ``contains``); None when the caption does not have that shape."""
    pattern = rf"^the (.+?) (?:(?:is|are) )?{re.escape(relation.strip().lower())} the (.+?)\s*\.?$"
    match = re.match(pattern, " ".join(caption.strip().lower().split()))
    return (match.group(1).strip(), match.group(2).strip()) if match else None


@dataclass
class ProfileSample:
    """One usable train row: its image, prompt and the two COCO categories to look for."""

    row: dict
    image_path: Path
    categories: tuple[str, str]
    boxes: list[list[float]]


@dataclass
class SampleSelection:
    samples: list[ProfileSample] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    unmapped_nouns: Counter = field(default_factory=Counter)


def select_samples(
    rows: Sequence[dict],
    image_folder: Path,
    coco: CocoBoxes,
    limit: int,
    seed: int = 0,
    resolve_image: Callable[[dict, Path], Path] | None = None,
) -> SampleSelection:
    """Up to ``limit`` usable rows in a seeded random order, with every skipped row counted by reason."""
    from vsr_tasks.data import image_path as default_resolve

    resolve_image = resolve_image or default_resolve
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    selection = SampleSelection()
    for index in order:
        if len(selection.samples) >= limit:
            break
        row = rows[index]
        parsed = parse_caption(row["caption"], row["relation"])
        if parsed is None:
            selection.skipped["caption not 'The SUBJ ... RELATION the OBJ.'"] += 1
            continue
        split = coco_split_of(row)
        names = coco.category_names(split)
        categories = [coco_category(noun, names) for noun in parsed]
        if None in categories:
            for noun, category in zip(parsed, categories):
                if category is None:
                    selection.unmapped_nouns[noun] += 1
            selection.skipped["subject or object is not a COCO category"] += 1
            continue
        boxes = coco.boxes(split, coco_image_id(row), categories)
        if not boxes:
            selection.skipped["no COCO box of either category in the image"] += 1
            continue
        selection.samples.append(ProfileSample(row, resolve_image(row, image_folder), tuple(categories), boxes))
    return selection


def refuse_held_out(split: str) -> None:
    if split != PROFILE_SPLIT:
        raise ProfilingError(
            f"VEA profiles layers on the train split only; refusing split {split!r} "
            "(choosing layers on dev or test rows would leak the evaluation data)"
        )


def load_profile_rows(vsr_data_dir: Path, dataset_type: str, split: str = PROFILE_SPLIT) -> list[dict]:
    """The train rows of one VSR split family; any other split is refused."""
    from vsr_tasks.data import load_split

    refuse_held_out(split)
    return load_split(dataset_type, split, vsr_data_dir)
