"""The ``python -m finetune`` command line: flags, defaults, and checks that name the bad flag.

Defaults are the reference recipe the studied checkpoints were trained with:
3 epochs, learning rate 2e-5, 5 warmup steps, weight decay 1e-6, AdamW, and an
effective batch of 64 sequences per optimizer step (per-device batch 8 x 8
accumulation steps on one process; the accumulation is divided by the number of
processes when it is not given).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.names import DEFAULT_PRETRAINED
from vsr_tasks import heldout
from vsr_tasks.data import DATA_DIR_VARIABLE, DATASET_TYPES, IMAGE_DIR_VARIABLE

DEFAULT_MODEL_ID = DEFAULT_PRETRAINED
DEFAULT_EFFECTIVE_BATCH = 64
DEFAULT_LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")


class ArgumentError(ValueError):
    """A flag has a value that cannot work; the message names the flag."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: flags whose help already explains the default are left alone."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "(default" in (action.help or "") or action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune",
        description="Supervised fine-tuning of a vision-language model (Qwen3-VL, Qwen2.5-VL, LLaVA-1.5) on a VSR train split (loss on the answer only).",
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_type", choices=DATASET_TYPES, default="random", help="VSR split family")
    data.add_argument(
        "--vsr_data_dir",
        default=os.environ.get(DATA_DIR_VARIABLE) or None,
        help=f"VSR data folder: its images/, and its splits/ if it has one, else the packaged splits (default: ${DATA_DIR_VARIABLE})",
    )
    data.add_argument(
        "--image_dir",
        default=None,
        help=f"image folder (default: ${IMAGE_DIR_VARIABLE}, else VSR_DATA_DIR/images); flat or COCO train2017/+val2017/",
    )
    data.add_argument(
        "--eval_fraction",
        type=float,
        default=heldout.DEFAULT_FRACTION,
        help="held-out share of the TRAIN split (the defaults' slice is the vsr_*_heldout tasks)",
    )
    data.add_argument(
        "--eval_split_seed",
        type=int,
        default=heldout.DEFAULT_SEED,
        help="seed of the held-out draw (fixed across runs)",
    )
    data.add_argument("--max_train_samples", type=int, default=None, help="use only the first N training rows")
    data.add_argument("--max_eval_samples", type=int, default=None, help="use only the first N held-out rows")
    data.add_argument(
        "--skip_missing_images",
        action="store_true",
        help="drop rows whose image file is missing (counted and reported) instead of failing",
    )
    data.add_argument("--min_pixels", type=int, default=None, help="image budget lower bound (default: processor's)")
    data.add_argument("--max_pixels", type=int, default=None, help="image budget upper bound (default: processor's)")
    data.add_argument("--dataloader_num_workers", type=int, default=2, help="processes decoding images")
    data.add_argument(
        "--dim_share",
        type=float,
        default=0.0,
        help="share of train rows shown dimmed outside a random region, as VEA's highlighted images (0: off)",
    )
    data.add_argument(
        "--dim_strength",
        default="0.2,0.5",
        help="LOW,HIGH range of the brightness kept outside the region (VEA's highlight_strength: 0.5 random, 0.2 zeroshot)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_id", default=DEFAULT_MODEL_ID, help="a checkpoint folder or hub id (any supported family)"
    )
    model.add_argument(
        "--freeze_vision",
        action="store_true",
        help="keep the vision tower fixed (Qwen: with its merger; LLaVA: not its projector)",
    )
    model.add_argument("--use_lora", action="store_true", help="train LoRA adapters only (merged copy saved too)")
    model.add_argument("--lora_r", type=int, default=16, help="LoRA rank")
    model.add_argument("--lora_alpha", type=int, default=32, help="LoRA alpha (scale alpha / r)")
    model.add_argument("--lora_dropout", type=float, default=0.05, help="dropout on the LoRA input")
    model.add_argument(
        "--lora_target_modules",
        default=DEFAULT_LORA_TARGETS,
        help="comma-separated module names to adapt (the defaults exist only in the language model)",
    )
    model.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for activation memory")

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True, help="where checkpoint-N/ folders and logs go (required)")
    train.add_argument("--overwrite_output_dir", action="store_true", help="allow an output_dir with checkpoints")
    train.add_argument("--epochs", type=float, default=3, help="passes over the training rows")
    train.add_argument("--max_steps", type=int, default=None, help="optimizer steps; overrides --epochs")
    train.add_argument("--learning_rate", type=float, default=2e-5, help="AdamW peak learning rate")
    train.add_argument("--warmup_steps", type=int, default=5, help="linear warmup steps")
    train.add_argument("--weight_decay", type=float, default=1e-6, help="AdamW weight decay (not on biases/norms)")
    train.add_argument("--lr_scheduler_type", choices=SCHEDULERS, default="linear", help="decay after warmup")
    train.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0: off)")
    train.add_argument("--per_device_batch_size", type=int, default=8, help="sequences per forward per process")
    train.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=None,
        help=f"micro-batches per optimizer step (default: {DEFAULT_EFFECTIVE_BATCH} / "
        "(per_device_batch_size x processes), i.e. 8 on one process)",
    )
    train.add_argument("--eval_batch_size", type=int, default=None, help="held-out batch (default: per-device)")
    train.add_argument("--save_steps", type=int, default=None, help="checkpoint every N steps (default: each epoch)")
    train.add_argument("--eval_steps", type=int, default=None, help="extra held-out evaluations every N steps")
    train.add_argument("--save_total_limit", type=int, default=None, help="keep the newest N checkpoints (+ best)")
    train.add_argument("--logging_steps", type=int, default=1, help="log train loss every N steps")
    train.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="a checkpoint-N folder, or 'latest' (the newest in --output_dir)",
    )
    train.add_argument(
        "--stop_at_step",
        type=int,
        default=None,
        help="end this run after step N (schedule unchanged) to resume later, e.g. on time-limited queues",
    )
    train.add_argument(
        "--stop_at_accuracy",
        type=float,
        default=None,
        help="end the run (with a checkpoint) at the first held-out evaluation whose accuracy reaches A: "
        "early stopping, e.g. to restart an unlucky run from scratch; needs --eval_fraction > 0",
    )
    train.add_argument("--seed", type=int, default=42, help="data order and initialisation seed")
    train.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (fp32 master weights)")
    train.add_argument("--log_with_aim", action="store_true", help="also log to Aim (pip install aim)")
    train.add_argument("--aim_repo", default=None, help="Aim repository (default: --output_dir)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; bad values raise :class:`ArgumentError` naming the flag."""
    args = build_parser().parse_args(argv)
    validate(args)
    return args


def validate(args: argparse.Namespace) -> None:
    from finetune.augment import DimAugmentation, parse_strength

    try:
        DimAugmentation(args.dim_share, parse_strength(args.dim_strength), args.seed)
    except ValueError as error:
        raise ArgumentError(str(error)) from None
    if not args.vsr_data_dir and args.image_dir is None and not os.environ.get(IMAGE_DIR_VARIABLE, "").strip():
        raise ArgumentError(
            f"--vsr_data_dir is required (or set {DATA_DIR_VARIABLE}), unless --image_dir or {IMAGE_DIR_VARIABLE} "
            "names the image folder: VSR's data folder with images/ (the split files ship with the plugin)"
        )
    if args.vsr_data_dir and not Path(args.vsr_data_dir).is_dir():
        raise ArgumentError(f"--vsr_data_dir {args.vsr_data_dir} does not exist or is not a folder")
    if args.image_dir is not None and not Path(args.image_dir).is_dir():
        raise ArgumentError(f"--image_dir {args.image_dir} does not exist or is not a folder")
    if not 0.0 <= args.eval_fraction < 1.0:
        raise ArgumentError(f"--eval_fraction must be in [0, 1), got {args.eval_fraction}")
    if args.stop_at_accuracy is not None:
        if not 0.0 < args.stop_at_accuracy <= 1.0:
            raise ArgumentError(f"--stop_at_accuracy must be in (0, 1], got {args.stop_at_accuracy}")
        if args.eval_fraction == 0:
            raise ArgumentError("--stop_at_accuracy needs held-out rows to measure: set --eval_fraction > 0")
    positive = {
        "--per_device_batch_size": args.per_device_batch_size,
        "--gradient_accumulation_steps": args.gradient_accumulation_steps,
        "--eval_batch_size": args.eval_batch_size,
        "--max_steps": args.max_steps,
        "--save_steps": args.save_steps,
        "--eval_steps": args.eval_steps,
        "--save_total_limit": args.save_total_limit,
        "--logging_steps": args.logging_steps,
        "--stop_at_step": args.stop_at_step,
        "--max_train_samples": args.max_train_samples,
        "--max_eval_samples": args.max_eval_samples,
        "--lora_r": args.lora_r,
        "--min_pixels": args.min_pixels,
        "--max_pixels": args.max_pixels,
    }
    for flag, value in positive.items():
        if value is not None and value < 1:
            raise ArgumentError(f"{flag} must be a positive integer, got {value}")
    if args.epochs <= 0 and args.max_steps is None:
        raise ArgumentError(f"--epochs must be positive (or give --max_steps), got {args.epochs}")
    if args.learning_rate <= 0:
        raise ArgumentError(f"--learning_rate must be positive, got {args.learning_rate}")
    for flag, value in {"--warmup_steps": args.warmup_steps, "--weight_decay": args.weight_decay}.items():
        if value < 0:
            raise ArgumentError(f"{flag} must not be negative, got {value}")
    if args.dataloader_num_workers < 0:
        raise ArgumentError(f"--dataloader_num_workers must not be negative, got {args.dataloader_num_workers}")
    if not 0.0 <= args.lora_dropout < 1.0:
        raise ArgumentError(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")
    if args.use_lora and not lora_targets(args):
        raise ArgumentError("--lora_target_modules is empty; name modules such as q_proj,v_proj")
    if args.min_pixels and args.max_pixels and args.min_pixels > args.max_pixels:
        raise ArgumentError(f"--min_pixels {args.min_pixels} is larger than --max_pixels {args.max_pixels}")


def lora_targets(args: argparse.Namespace) -> list[str]:
    return [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]


def accumulation_steps(args: argparse.Namespace, num_processes: int) -> int:
    """``--gradient_accumulation_steps``, or the value that makes the effective batch 64."""
    if args.gradient_accumulation_steps is not None:
        return args.gradient_accumulation_steps
    per_step = args.per_device_batch_size * num_processes
    if DEFAULT_EFFECTIVE_BATCH % per_step:
        raise ArgumentError(
            f"--per_device_batch_size {args.per_device_batch_size} x {num_processes} process(es) does not divide the "
            f"effective batch {DEFAULT_EFFECTIVE_BATCH}; give --gradient_accumulation_steps explicitly"
        )
    return DEFAULT_EFFECTIVE_BATCH // per_step
