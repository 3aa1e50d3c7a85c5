"""Reproduce a study in one command: ``python scripts/reproduce.py --study seed --out reproduce_out``.

Every study is a data file, ``scripts/studies/<study>.json``, run by one runner (``scripts/study.py``):

- ``seed`` (the default), the reference study: Qwen3-VL-2B fine-tuned on each VSR train split, dev accuracy of the
  baseline and the three interventions, each split's checkpoint with its split's preset (``preset=seed_random`` /
  ``seed_zeroshot``, ``models/presets.json``), ``dtype=float32`` as the study. Checkpoints: the published ones by
  default, local ones with ``--random_checkpoint`` / ``--zeroshot_checkpoint``, or ``--finetune``: both trained from
  ``--base_model`` with the study's recipe. VEA's layers are profiled per checkpoint on its own train split
  (``python -m profiling``); ``--vea_layers study`` uses the study's published layers instead.
- ``adaptvis``, ``clvs``, ``vea``: that paper's headline experiment on its own model, with its paper preset.

Steps, each one of the project's command lines (``scripts/pipeline.py``, shared with ``scripts/demo.py``): the
study's settings, sources and published numbers are printed; every input is checked before any GPU time is spent
(each missing one is named with its fix); fine-tuning and profiling where the study has them; ``lmms-eval`` for every
model on every checkpoint (``--test`` adds a study's test tasks; ``--benchmarks TASK,...`` the same models on other
lmms-eval tasks, to see what a gain costs elsewhere); ``python -m analysis report`` over all runs with the published
numbers beside ours (``--reference``) and our paired 95% intervals and tests against the baseline on every task,
Holm-corrected across them. A finished step is skipped when the command is run again. ``--dry_run`` prints every
command and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Study, run, study_names  # noqa: E402  (scripts/ is not a package)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--study",
        choices=study_names(),
        default="seed",
        help="seed: the reference study (Qwen3-VL-2B on VSR); "
        + ", ".join(name for name in study_names() if name != "seed")
        + ": that paper's headline experiment on its own model (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("reproduce_out"), help="output folder (default reproduce_out)")
    parser.add_argument("--random_checkpoint", help="seed: the random-split checkpoint (default: the published one)")
    parser.add_argument(
        "--zeroshot_checkpoint", help="seed: the zeroshot-split checkpoint (default: the published one)"
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="replace one of the study's checkpoints (by the name the dry run prints) with a folder or hub id",
    )
    parser.add_argument("--finetune", action="store_true", help="seed: train every checkpoint from --base_model first")
    parser.add_argument("--base_model", default=None, help="what --finetune starts from (default: the study's)")
    parser.add_argument(
        "--splits", default=None, help="comma-separated checkpoint names to run, e.g. random (default: all)"
    )
    parser.add_argument("--methods", default=None, help="comma-separated models (default: all; the baseline always)")
    parser.add_argument("--test", action="store_true", help="evaluate the study's test tasks as well (seed: VSR test)")
    parser.add_argument(
        "--benchmarks",
        default="",
        metavar="TASK,...",
        help="other lmms-eval tasks (or groups) to evaluate every model on too, e.g. cv_bench_2d,pope,mmmu_val "
        "(default: none)",
    )
    parser.add_argument(
        "--include_path",
        default=None,
        metavar="FOLDER",
        help="a folder of extra task YAMLs for --benchmarks or --tasks, as lmms-eval's --include_path (default: none)",
    )
    parser.add_argument("--batch_size", type=int, default=8, help="sequences per forward (default: %(default)s)")
    parser.add_argument("--dtype", default=None, help="model dtype (default: the study's, float32 for seed)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N documents (smoke runs)")
    parser.add_argument(
        "--vea_layers",
        default="profiled",
        help="profiled (seed: profile each checkpoint on its train split; needs COCO boxes), study (the preset's "
        "layers) or [L,...] for a checkpoint whose depth the preset has no layers for (default: %(default)s)",
    )
    parser.add_argument(
        "--tasks", default=None, metavar="TASK,...", help="evaluate these tasks instead of the study's own"
    )
    parser.add_argument("--profile_samples", type=int, default=100, help="train rows VEA profiles on (default 100)")
    parser.add_argument("--vsr_data_dir", type=Path, default=None, help="VSR data folder (default: $VSR_DATA_DIR)")
    parser.add_argument(
        "--coco_annotations_dir", type=Path, default=None, help="COCO annotations (default: $COCO_ANNOTATIONS_DIR)"
    )
    parser.add_argument("--dry_run", action="store_true", help="print every command and change nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(Study.load(args.study), args)


if __name__ == "__main__":
    raise SystemExit(main())
