"""VEA layer profiling: which layers' last-row attention finds the caption's objects (COCO boxes).

Usage::

    python -m profiling --model PATH --vsr_data_dir D --dataset_type random \\
        --coco_annotations_dir C --samples 100 --out layers.json

For VSR *train* rows (never dev or test) whose subject and object, parsed from the caption with the
row's ``relation`` (random rows carry no ``subj``/``obj``), are COCO categories with a box in the
image: one fused prefill with the evaluation prompt records every layer's head-mean last-row image
attention; a visual token is *evidence* when its pixel cell overlaps a box of either
category; each layer is scored by the AUROC of its attention against those labels, averaged over
samples. The top ``layer_top_fraction`` of layers (rounded up) is kept. Rows that cannot be used are
counted by reason in the JSON. The model's family (``families``) says how big a token's cell is (32 px on
Qwen3-VL, 28 on Qwen2.5-VL, 14 on LLaVA-1.5) and which part of the image the grid covers (LLaVA-1.5 crops the
centre square).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from local_tasks.images import open_rgb

PROFILE_SPLIT = "train"
ANNOTATION_FILES = {"train2017": "instances_train2017.json", "val2017": "instances_val2017.json"}
COCO_ANNOTATIONS_VARIABLE = "COCO_ANNOTATIONS_DIR"
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


def top_layers(scores: Sequence[float], fraction: float) -> list[int]:
    """The ``ceil(fraction * L)`` best-scoring layers (at least one), ascending; NaN scores rank last.

    Equal scores: the higher layer is kept, as VEA's code keeps it (ZhiningLiu1998/VEA c03e995 ``vea/profiling.py:88``
    takes the last ``n_keep`` of an ascending ``np.argsort``; numpy's default sort keeps equal values in index order
    below 17 elements and most of the time above, not always: ours always)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"layer_top_fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * len(scores)))
    ranked = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i]), -scores[i], -i))
    return sorted(ranked[:keep])


class ProfilingError(RuntimeError):
    """Profiling cannot run; the message names the file, split or argument to fix."""


def parse_caption(caption: str, relation: str) -> tuple[str, str] | None:
    """``The SUBJ is RELATION the OBJ.`` -> ``(subj, obj)`` (also ``are``, and verb relations such as
    ``contains``); None when the caption does not have that shape."""
    pattern = rf"^the (.+?) (?:(?:is|are) )?{re.escape(relation.strip().lower())} the (.+?)\s*\.?$"
    match = re.match(pattern, " ".join(caption.strip().lower().split()))
    return (match.group(1).strip(), match.group(2).strip()) if match else None


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


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney, tied scores count one half); NaN without both classes."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    unique, inverse = torch.unique(sorted_scores, return_inverse=True)
    # average rank within each group of ties
    sums = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    counts = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(scores))
    ranks[order] = (sums / counts)[inverse]
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


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


@torch.inference_mode()
def profile_layers(
    model: torch.nn.Module,
    processor,
    family,
    samples: Sequence[ProfileSample],
    layer_top_fraction: float = 0.1,
    progress: bool = True,
) -> dict:
    """Per-layer mean AUROC over ``samples`` and the chosen layers (one prefill per sample, batch 1).

    ``family`` is the model's adapter (``families``): its image tokens, their grid and the region it covers.
    """
    from families.turns import images_first, render_user_turn
    from interventions.grids import fold_image_tokens
    from interventions.recording import record_image_attention
    from vsr_tasks.prompt import build_prompt

    num_layers = family.text_config(model).num_hidden_layers
    per_sample: list[list[float]] = []
    used: list[dict] = []
    degenerate = 0
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    image_token_id = family.image_token_id(model)
    for sample in tqdm(samples, desc="VEA layer profiling", disable=not progress):
        image = open_rgb(sample.image_path)
        text = render_user_turn(processor, images_first(build_prompt(sample.row["caption"]), [image]).content)
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        [[layout]] = family.image_tokens(processor, inputs, [1])
        grid = layout.grid
        [region] = family.image_regions(processor, [image.size])
        recorded = record_image_attention(model, inputs, inputs["input_ids"] == image_token_id)[0]  # [L, n]
        attention = fold_image_tokens(recorded, layout).flatten(1)  # [L, cells]: several token grids added on one
        labels = token_labels(sample.boxes, region, grid)
        if bool(labels.all()) or not bool(labels.any()):
            degenerate += 1  # every token (or none) is evidence: AUROC undefined
            continue
        per_sample.append([auroc(attention[layer], labels.flatten()) for layer in range(num_layers)])
        used.append(
            {"image": sample.row["image"], "caption": sample.row["caption"], "categories": list(sample.categories)}
        )
    if not per_sample:
        raise ProfilingError(
            f"no usable profiling sample: all {len(samples)} had every visual token (or none) inside the boxes"
        )
    scores = torch.tensor(per_sample, dtype=torch.float64)
    layer_auroc = [float(v) for v in torch.nanmean(scores, dim=0)]
    return {
        "num_layers": num_layers,
        "samples_used": len(per_sample),
        "samples_all_or_no_evidence": degenerate,
        "layer_auroc": layer_auroc,
        "layer_top_fraction": layer_top_fraction,
        "layers": top_layers(layer_auroc, layer_top_fraction),
        "samples": used,
    }


def run_profile(
    model: torch.nn.Module,
    processor,
    family,
    model_name: str,
    vsr_data_dir: str | Path,
    coco_annotations_dir: str | Path,
    dataset_type: str = "random",
    samples: int = 100,
    layer_top_fraction: float = 0.1,
    seed: int = 0,
    image_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Select train samples, profile, and return the JSON-ready record (the CLI and ``qwen3vl_vea`` share it)."""
    from vsr_tasks.data import image_dir as default_image_dir

    if samples < 1:
        raise ProfilingError(f"samples must be >= 1, got {samples}")
    vsr_data_dir = Path(vsr_data_dir)
    if not vsr_data_dir.is_dir():
        raise ProfilingError(f"VSR data folder not found: {vsr_data_dir} (pass vsr_data_dir or set VSR_DATA_DIR)")
    coco = CocoBoxes(coco_annotations_dir)
    rows = load_profile_rows(vsr_data_dir, dataset_type)
    folder = Path(image_dir) if image_dir is not None else default_image_dir(vsr_data_dir)
    selection = select_samples(rows, folder, coco, samples, seed)
    if not selection.samples:
        raise ProfilingError(
            f"none of the {len(rows)} {dataset_type} train rows could be used for profiling: {dict(selection.skipped)}"
        )
    result = profile_layers(model, processor, family, selection.samples, layer_top_fraction, progress)
    return {
        "model": str(model_name),
        "dataset_type": dataset_type,
        "split": PROFILE_SPLIT,
        "vsr_data_dir": str(vsr_data_dir),
        "coco_annotations_dir": str(coco.folder),
        "seed": seed,
        "samples_requested": samples,
        "samples_selected": len(selection.samples),
        "rows_skipped": dict(selection.skipped),
        "unmapped_nouns": dict(selection.unmapped_nouns.most_common()),
        **result,
    }


def read_layers_file(path: str | Path, num_layers: int | None = None) -> list[int]:
    """The ``layers`` of a profiling JSON, checked against the model's depth."""
    path = Path(path)
    if not path.is_file():
        raise ProfilingError(f"VEA layers file not found: {path} (write one with python -m profiling)")
    try:
        layers = [int(layer) for layer in json.loads(path.read_text())["layers"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ProfilingError(f"{path} is not a VEA profiling JSON with a 'layers' list ({error})") from None
    if not layers:
        raise ProfilingError(f"{path}: 'layers' is empty")
    if num_layers is not None and any(not 0 <= layer < num_layers for layer in layers):
        raise ProfilingError(f"{path}: layers {layers} outside the model's 0..{num_layers - 1}")
    return layers


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from families.devices import DTYPES

    parser = argparse.ArgumentParser(
        prog="python -m profiling",
        description="Choose VEA's layers by the AUROC of their image attention against COCO boxes (train rows only).",
    )
    parser.add_argument("--model", required=True, help="a checkpoint folder or hub id of a supported family")
    parser.add_argument("--vsr_data_dir", required=True, help="VSR data folder (splits/{random,zeroshot}/train.jsonl)")
    parser.add_argument("--dataset_type", choices=("random", "zeroshot"), default="random", help="default: random")
    parser.add_argument(
        "--split", default=PROFILE_SPLIT, help="must be train: dev and test are refused (default: train)"
    )
    parser.add_argument(
        "--coco_annotations_dir", required=True, help="folder with instances_train2017.json / instances_val2017.json"
    )
    parser.add_argument("--image_dir", default=None, help="image folder (default: $VSR_IMAGE_DIR, else DATA/images)")
    parser.add_argument("--samples", type=int, default=100, help="usable train rows to profile on (default: 100)")
    parser.add_argument("--layer_top_fraction", type=float, default=0.1, help="share of layers kept, rounded up")
    parser.add_argument("--seed", type=int, default=0, help="order in which train rows are drawn (default: 0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--dtype", choices=("auto", *DTYPES), default="auto", help="default: bfloat16 on CUDA, else float32"
    )
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    from vsr_tasks.data import VSRDataError

    args = parse_args(argv)
    try:
        refuse_held_out(args.split)
        from transformers import AutoProcessor

        from families import FamilyError, family_for
        from families.devices import pick_device, pick_dtype
        from interventions.attention import use_steered_attention

        try:
            family = family_for(args.model)
        except FamilyError as error:
            raise ProfilingError(str(error)) from None
        device = pick_device(args.device)
        dtype = pick_dtype(args.dtype, device)
        processor = AutoProcessor.from_pretrained(args.model)
        model = family.load(args.model, dtype)
        use_steered_attention(model.to(device).eval())
        record = run_profile(
            model,
            processor,
            family,
            args.model,
            args.vsr_data_dir,
            args.coco_annotations_dir,
            args.dataset_type,
            args.samples,
            args.layer_top_fraction,
            args.seed,
            args.image_dir,
        )
    except (ProfilingError, VSRDataError) as error:
        raise SystemExit(f"error: {error}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    best = ", ".join(f"{layer} ({record['layer_auroc'][layer]:.3f})" for layer in record["layers"])
    print(f"profiled {record['samples_used']} train samples; layers (AUROC): {best}; written to {args.out}")
    if record["rows_skipped"]:
        print(f"rows skipped: {record['rows_skipped']}")
