"""``python -m vsr_tasks.synthetic OUT --n_train N --n_dev N --n_test N --seed S [--image_size 224]``."""

from __future__ import annotations

import argparse
import sys
import time

from vsr_tasks.synthetic.generate import generate
from vsr_tasks.synthetic.geometry import RELATIONS
from vsr_tasks.synthetic.scene import CATEGORIES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vsr_tasks.synthetic",
        description="Write a synthetic VSR-layout set (splits/random/*.jsonl, images/, COCO annotations/) to OUT.",
    )
    parser.add_argument("out", help="output folder (use it as VSR_DATA_DIR; OUT/annotations as COCO_ANNOTATIONS_DIR)")
    parser.add_argument("--n_train", type=int, required=True)
    parser.add_argument("--n_dev", type=int, required=True)
    parser.add_argument("--n_test", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=224, help="square image side in pixels (default 224)")
    parser.add_argument(
        "--relations",
        default=",".join(RELATIONS),
        help=f"comma-separated subset of: {', '.join(RELATIONS)} (default: all)",
    )
    parser.add_argument(
        "--categories",
        default=",".join(c.name for c in CATEGORIES),
        help=f"comma-separated subset (at least two) of: {', '.join(c.name for c in CATEGORIES)} (default: all); "
        "their order defines the canonical subject for --train_skew",
    )
    parser.add_argument(
        "--train_skew",
        type=float,
        default=0.0,
        help="share of TRAIN rows in one canonical form (first relation, subject = the earlier category), "
        "so a model trained from scratch gets a foothold; dev/test are never skewed (default 0)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a synthetic set already in OUT")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    relations = [r.strip() for r in args.relations.split(",") if r.strip()]
    start = time.perf_counter()
    try:
        manifest = generate(
            args.out,
            n_train=args.n_train,
            n_dev=args.n_dev,
            n_test=args.n_test,
            seed=args.seed,
            image_size=args.image_size,
            relations=relations,
            overwrite=args.overwrite,
            categories=[c.strip() for c in args.categories.split(",") if c.strip()],
            train_skew=args.train_skew,
        )
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    labels = ", ".join(f"{s} {v['true']}/{v['false']}" for s, v in manifest["labels"].items())
    print(f"wrote {args.out} in {seconds:.1f}s (true/false: {labels})")
    print(f"use: VSR_DATA_DIR={args.out} COCO_ANNOTATIONS_DIR={args.out}/annotations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
