"""Profiling a loaded model: one prefill per train row through the engine, each layer scored against the boxes.

The prompt is the evaluation's (``Engine.prepare``: the VSR prompt, the checkpoint's chat template, its system prompt
when one is given), so the layers are chosen on what an evaluation shows the model. The record returned is what
``python -m profiling`` writes and what VEA caches on first use (``models.vea_layers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from interventions.grids import fold_image_tokens
from interventions.recording import record_image_attention
from local_tasks.images import open_rgb
from models.host import MethodHost, ProfileRequest
from profiling.coco import CocoBoxes, token_labels
from profiling.errors import ProfilingError
from profiling.samples import PROFILE_SPLIT, ProfileSample, load_profile_rows, select_samples
from profiling.scores import auroc, top_layers
from vsr_tasks.data import DATA_DIR_VARIABLE
from vsr_tasks.prompt import build_prompt

TASK_NAME = "vea_layer_profiling"  # how the rows are named where an error names a task


@torch.inference_mode()
def profile_layers(
    host: MethodHost, samples: Sequence[ProfileSample], layer_top_fraction: float = 0.1, progress: bool = True
) -> dict:
    """Per-layer mean AUROC over ``samples`` and the chosen layers (one prefill per sample, batch 1).

    The host's family says where the image tokens are, their grid and the region of the image it covers.
    """
    per_sample: list[list[float]] = []
    used: list[dict] = []
    degenerate = 0
    for sample in tqdm(samples, desc="VEA layer profiling", disable=not progress):
        image = open_rgb(sample.image_path)
        batch = host.prepare([build_prompt(sample.row["caption"])], [[image]], [0], [TASK_NAME])
        [layout] = batch.image_tokens[0]
        [region] = batch.image_regions[0]
        recorded = record_image_attention(host.model, batch.inputs, batch.image_token_mask)[0]  # [L, n]
        attention = fold_image_tokens(recorded, layout).flatten(1)  # [L, cells]: several token grids added on one
        labels = token_labels(sample.boxes, region, layout.grid)
        if bool(labels.all()) or not bool(labels.any()):
            degenerate += 1  # every token (or none) is evidence: AUROC undefined
            continue
        per_sample.append([auroc(attention[layer], labels.flatten()) for layer in range(host.depth)])
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
        "num_layers": host.depth,
        "samples_used": len(per_sample),
        "samples_all_or_no_evidence": degenerate,
        "layer_auroc": layer_auroc,
        "layer_top_fraction": layer_top_fraction,
        "layers": top_layers(layer_auroc, layer_top_fraction),
        "samples": used,
    }


def check_request(request: ProfileRequest) -> None:
    """Refuse what cannot profile before any weight is loaded: too few samples, a missing data folder."""
    if request.samples < 1:
        raise ProfilingError(f"samples must be >= 1, got {request.samples}")
    if not Path(request.vsr_data_dir).is_dir():
        raise ProfilingError(
            f"VSR data folder not found: {request.vsr_data_dir} (pass vsr_data_dir or set {DATA_DIR_VARIABLE})"
        )
    CocoBoxes(request.coco_annotations_dir)  # the folder exists


def run_profile(
    host: MethodHost,
    request: ProfileRequest,
    seed: int = 0,
    image_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Select train samples, profile, and return the JSON-ready record (``python -m profiling`` and VEA's first use
    share it: it is the engine's layer profiler, ``plugin.loading``)."""
    from vsr_tasks.data import image_dir as default_image_dir

    check_request(request)
    vsr_data_dir = Path(request.vsr_data_dir)
    coco = CocoBoxes(request.coco_annotations_dir)
    rows = load_profile_rows(vsr_data_dir, request.dataset_type)
    folder = Path(image_dir) if image_dir is not None else default_image_dir(vsr_data_dir)
    selection = select_samples(rows, folder, coco, request.samples, seed)
    if not selection.samples:
        raise ProfilingError(
            f"none of the {len(rows)} {request.dataset_type} train rows could be used for profiling: "
            f"{dict(selection.skipped)}"
        )
    result = profile_layers(host, selection.samples, request.layer_top_fraction, progress)
    return {
        "model": str(request.model),
        "dataset_type": request.dataset_type,
        "split": PROFILE_SPLIT,
        "vsr_data_dir": str(vsr_data_dir),
        "coco_annotations_dir": str(coco.folder),
        "seed": seed,
        "samples_requested": request.samples,
        "samples_selected": len(selection.samples),
        "rows_skipped": dict(selection.skipped),
        "unmapped_nouns": dict(selection.unmapped_nouns.most_common()),
        **result,
    }
