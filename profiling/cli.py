"""``python -m profiling``: choose VEA's evidence layers and write them as JSON (``layers_file=`` reads it).

Usage::

    python -m profiling --model PATH --vsr_data_dir D --dataset_type random \\
        --coco_annotations_dir C --samples 100 --out layers.json

For VSR *train* rows (never dev or test) whose subject and object, parsed from the caption with the row's
``relation`` (random rows carry no ``subj``/``obj``), are COCO categories with a box in the image
(``profiling.samples``): one fused prefill with the evaluation prompt records every layer's head-mean last-row image
attention; a visual token is *evidence* when its pixel cell overlaps a box of either category (``profiling.coco``);
each layer is scored by the AUROC of its attention against those labels, averaged over samples
(``profiling.scores``). The top ``layer_top_fraction`` of layers (rounded up) is kept. Rows that cannot be used are
counted by reason in the JSON. The model's family (``families``) says how big a token's cell is (32 px on Qwen3-VL, 28
on Qwen2.5-VL, 14 on LLaVA-1.5) and which part of the image the grid covers (LLaVA-1.5 crops the centre square). The
checkpoint is loaded as every command loads one (``models.loading``: its family checked, its refusals by name).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from models.host import ProfileRequest
from profiling.profile import check_request, run_profile
from profiling.samples import PROFILE_SPLIT, refuse_held_out

PROGRAM = "python -m profiling"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from families.devices import DTYPES

    parser = argparse.ArgumentParser(
        prog=PROGRAM,
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
    from models.loading import load_engine
    from vsr_tasks.data import VSRDataError

    args = parse_args(argv)
    request = ProfileRequest(
        model=args.model,
        vsr_data_dir=args.vsr_data_dir,
        coco_annotations_dir=args.coco_annotations_dir,
        dataset_type=args.dataset_type,
        samples=args.samples,
        layer_top_fraction=args.layer_top_fraction,
    )
    try:
        refuse_held_out(args.split)
        check_request(request)
        engine = load_engine(PROGRAM, None, None, pretrained=args.model, device=args.device, dtype=args.dtype)
        engine.use_steered_attention()  # the attention is recorded through the steered SDPA
        record = run_profile(engine, request, args.seed, args.image_dir)
    except (ValueError, VSRDataError) as error:  # ProfilingError is a ValueError; so is a refused checkpoint
        raise SystemExit(f"error: {error}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    best = ", ".join(f"{layer} ({record['layer_auroc'][layer]:.3f})" for layer in record["layers"])
    print(f"profiled {record['samples_used']} train samples; layers (AUROC): {best}; written to {args.out}")
    if record["rows_skipped"]:
        print(f"rows skipped: {record['rows_skipped']}")
