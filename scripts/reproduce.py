"""Reproduce the reference study's table in one command: ``python scripts/reproduce.py --out reproduce_out``.

``--study seed`` (the default) is the seed study below; ``--study adaptvis|clvs|vea`` runs that paper's headline
experiment on its own model instead (``scripts/paper_studies.py``, ``scripts/studies/*.json``).

The study fine-tuned Qwen3-VL-2B on each VSR train split and reported dev accuracy for the base model and
the three interventions (``scripts/study_results.json``). Steps, each one of the project's command lines
(``scripts/pipeline.py``, shared with ``scripts/demo.py``):

1. Checkpoints: the published ones (``changdb/Qwen3-VL-2B-Instruct-VSR-{Random,Zeroshot}``) by default,
   local ones with ``--random_checkpoint`` / ``--zeroshot_checkpoint``, or ``--finetune``: both trained from
   ``--base_model`` with the study's recipe (``python -m finetune`` defaults: frozen vision tower, effective
   batch 64, lr 2e-5, 3 epochs; the best held-out checkpoint is used).
2. VEA layer profiling per checkpoint on its own train split (``python -m profiling``);
   ``--vea_layers study`` uses the study's published layers instead (no COCO annotations needed).
3. ``lmms-eval``: 4 methods x 2 splits on dev (``--test`` adds test), each intervention with its split's
   preset (``preset=seed_random`` / ``seed_zeroshot``, ``models/presets.json``), ``dtype=float32`` (as the
   study), the attention log on, ``--batch_size`` passed through.
4. ``--benchmarks TASK,...``: the same models (same checkpoints, presets and attention log) on other lmms-eval
   tasks, to see what a VSR gain costs elsewhere (README: the recommended set).
5. ``python -m analysis report`` over all runs, with the study's numbers beside ours (``--reference``) and our
   paired 95% intervals and tests against the baseline on every task, Holm-corrected across them.

Inputs are checked before any GPU time is spent; each missing one is named with its fix. A finished step
(results file, profile JSON, fine-tuning summary) is skipped when the command is run again. ``--dry_run``
prints every command and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_studies  # noqa: E402
from inputs import check_benchmarks, check_hub, env_path  # noqa: E402  (scripts/ is not a package)
from pipeline import Pipeline, qwen3vl_models, study_model, task_accuracy  # noqa: E402

from models.names import DEFAULT_PRETRAINED  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
STUDY_RESULTS = SCRIPTS / "study_results.json"
SPLITS = ("random", "zeroshot")
METHODS = qwen3vl_models()
BASELINE_MODEL, VEA_MODEL = (
    study_model(None),
    study_model("vea"),
)  # the baseline and each method, from the method registry
PUBLISHED = {
    "random": "changdb/Qwen3-VL-2B-Instruct-VSR-Random",
    "zeroshot": "changdb/Qwen3-VL-2B-Instruct-VSR-Zeroshot",
}
BASE_MODEL = DEFAULT_PRETRAINED


@dataclass
class Plan:
    """What to run, resolved from the arguments."""

    out: Path
    splits: list[str]
    methods: list[str]
    benchmarks: list[str]
    checkpoints: dict[str, str]  # split -> local folder or hub id (fine-tuned ones resolved after training)
    vsr_data_dir: Path | None
    coco_annotations_dir: Path | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--study",
        choices=("seed", *paper_studies.STUDIES),
        default="seed",
        help="seed: the reference study (Qwen3-VL-2B on VSR); adaptvis, clvs, vea: that paper's headline experiment "
        "on its own model (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("reproduce_out"), help="output folder (default reproduce_out)")
    parser.add_argument("--random_checkpoint", help=f"random-split checkpoint (default: {PUBLISHED['random']})")
    parser.add_argument("--zeroshot_checkpoint", help=f"zeroshot-split checkpoint (default: {PUBLISHED['zeroshot']})")
    parser.add_argument("--finetune", action="store_true", help="train both checkpoints from --base_model first")
    parser.add_argument("--base_model", default=BASE_MODEL, help="what --finetune starts from (default: %(default)s)")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: random, zeroshot (default: both)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated models (default: all four)")
    parser.add_argument("--test", action="store_true", help="evaluate the test splits as well as dev")
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
        help="a folder of extra task YAMLs for --benchmarks, as lmms-eval's --include_path (default: none)",
    )
    parser.add_argument("--batch_size", type=int, default=8, help="sequences per forward (default: %(default)s)")
    parser.add_argument(
        "--dtype", default=None, help="model dtype (default: float32 for seed, as the study; a paper study's own)"
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N documents (smoke runs)")
    parser.add_argument(
        "--vea_layers",
        default="profiled",
        help="seed: profiled (profile each checkpoint on its train split; needs COCO boxes) or study (the study's "
        "layers); a paper study: [L,...] for a checkpoint whose depth its preset has no layers for",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a paper study: replace one of its checkpoints (by the name the dry run prints) with a folder or hub id",
    )
    parser.add_argument(
        "--tasks", default=None, metavar="TASK,...", help="a paper study: evaluate these tasks instead of its own"
    )
    parser.add_argument("--profile_samples", type=int, default=100, help="train rows VEA profiles on (default 100)")
    parser.add_argument("--vsr_data_dir", type=Path, default=None, help="VSR data folder (default: $VSR_DATA_DIR)")
    parser.add_argument(
        "--coco_annotations_dir", type=Path, default=None, help="COCO annotations (default: $COCO_ANNOTATIONS_DIR)"
    )
    parser.add_argument("--dry_run", action="store_true", help="print every command and change nothing")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.vea_layers not in ("profiled", "study"):
        raise SystemExit(f"--vea_layers: profiled or study for the seed study, got {args.vea_layers!r}")
    args.dtype = args.dtype or "float32"
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not splits or any(s not in SPLITS for s in splits):
        raise SystemExit(f"--splits: choose from {', '.join(SPLITS)}, got {args.splits!r}")
    if not methods or any(m not in METHODS for m in methods):
        raise SystemExit(f"--methods: choose from {', '.join(METHODS)}, got {args.methods!r}")
    methods = [BASELINE_MODEL] + [m for m in methods if m != BASELINE_MODEL]  # the baseline of every comparison
    given = {"random": args.random_checkpoint, "zeroshot": args.zeroshot_checkpoint}
    if args.finetune and any(given.values()):
        raise SystemExit(
            "--finetune trains both checkpoints; do not also pass --random_checkpoint/--zeroshot_checkpoint"
        )
    checkpoints = {split: given[split] or PUBLISHED[split] for split in splits}
    data = args.vsr_data_dir or env_path("VSR_DATA_DIR")
    coco = args.coco_annotations_dir or env_path("COCO_ANNOTATIONS_DIR")
    benchmarks = [t.strip() for t in args.benchmarks.split(",") if t.strip()]
    return Plan(args.out.resolve(), splits, methods, benchmarks, checkpoints, data, coco)


# ------------------------------------------------------------------ inputs
def check_inputs(plan: Plan, args: argparse.Namespace) -> list[str]:
    """Every missing input, one line each with its fix (empty: ready to run)."""
    problems: list[str] = []
    if plan.vsr_data_dir is None or not plan.vsr_data_dir.is_dir():
        where = "is not set" if plan.vsr_data_dir is None else f"={plan.vsr_data_dir} does not exist"
        problems.append(
            f"VSR_DATA_DIR {where}: clone cambridgeltl/visual-spatial-reasoning, follow its data/ README, then "
            "export VSR_DATA_DIR=/path/to/visual-spatial-reasoning/data (or pass --vsr_data_dir)"
        )
    else:
        problems += _check_splits(plan, args)
    if VEA_MODEL in plan.methods and args.vea_layers == "profiled":
        coco = plan.coco_annotations_dir
        missing = [
            n for n in ("instances_train2017.json", "instances_val2017.json") if not coco or not (coco / n).is_file()
        ]
        if missing:
            problems.append(
                f"COCO_ANNOTATIONS_DIR {'is not set' if coco is None else f'={coco} lacks ' + ', '.join(missing)}: "
                "download COCO 2017 annotations (cocodataset.org) and export COCO_ANNOTATIONS_DIR=/path/to/annotations, "
                "or pass --vea_layers study to use the study's layers"
            )
    problems += check_benchmarks(plan.benchmarks, args.include_path)
    if args.finetune:
        problems += check_hub(args.base_model, "--base_model")
    else:
        for split, checkpoint in plan.checkpoints.items():
            problems += check_hub(checkpoint, f"--{split}_checkpoint")
    return problems


def _check_splits(plan: Plan, args: argparse.Namespace) -> list[str]:
    from vsr_tasks import data as vsr

    problems = []
    needed = ["train", "dev"] + (["test"] if args.test else [])
    try:
        folder = vsr.image_dir(plan.vsr_data_dir)
    except vsr.VSRDataError as error:
        return [str(error)]
    for split_type in plan.splits:
        for split in needed:
            path = vsr.split_path(plan.vsr_data_dir, split_type, split)
            if not path.is_file():
                problems.append(f"{path} is missing: VSR_DATA_DIR must hold splits/{split_type}/{split}.jsonl")
                continue
            if split == "train":
                continue
            rows = vsr.read_rows(path)[: args.limit] if args.limit else vsr.read_rows(path)
            missing = []
            for row in rows:
                try:
                    vsr.image_path(row, folder)
                except vsr.VSRDataError:
                    missing.append(row["image"])
            if missing:
                problems.append(
                    f"{len(missing)} of the {len(rows)} {split_type}/{split} images are missing from {folder} "
                    f"(first: {missing[0]}): download them with VSR's data/ script or set VSR_IMAGE_DIR"
                )
    return problems


# ------------------------------------------------------------------ steps
def finetune(pipeline: Pipeline, plan: Plan, args: argparse.Namespace, split: str) -> str:
    """Train one split's checkpoint with the study's recipe (finetune's defaults); returns the best checkpoint."""
    output = plan.out / "finetune" / split
    state = output / "trainer_state.json"
    if not args.dry_run and state.is_file() and json.loads(state.read_text()).get("finished"):
        pipeline.log(f"fine-tune {split}: finished run in {output}, skipped")
    else:
        resume = ["--resume_from_checkpoint", "latest"] if (output / "trainer_state.json").is_file() else []
        pipeline.run(
            f"fine-tune {split}",
            ["-m", "finetune", "--dataset_type", split, "--vsr_data_dir", str(plan.vsr_data_dir or "$VSR_DATA_DIR"),
             "--model_id", args.base_model, "--freeze_vision", "--output_dir", str(output), *resume],
            pipeline.env(),
        )  # fmt: skip
    if args.dry_run:
        return str(output / "<best checkpoint>")
    return json.loads(state.read_text())["best_checkpoint"]


def profile(pipeline: Pipeline, plan: Plan, args: argparse.Namespace, split: str, checkpoint: str) -> Path:
    out = plan.out / f"vea_layers_{split}.json"
    if not args.dry_run and out.is_file():
        pipeline.log(f"VEA profile {split}: {out} exists, skipped")
        return out
    data, coco = plan.vsr_data_dir or "$VSR_DATA_DIR", plan.coco_annotations_dir or "$COCO_ANNOTATIONS_DIR"
    command = ["-m", "profiling", "--model", checkpoint, "--vsr_data_dir", str(data),
               "--dataset_type", split, "--coco_annotations_dir", str(coco),
               "--samples", str(args.profile_samples), "--dtype", args.dtype, "--out", str(out)]  # fmt: skip
    if args.device:
        command += ["--device", args.device]
    pipeline.run(f"VEA profile {split}", command, pipeline.env())
    return out


def model_args(method: str, split: str, checkpoint: str, layers_file: Path | None, plan: Plan, args) -> dict:
    arguments: dict[str, object] = {"pretrained": checkpoint, "dtype": args.dtype, "batch_size": args.batch_size}
    if args.device:
        arguments["device"] = args.device
    if method != BASELINE_MODEL:
        arguments["preset"] = f"seed_{split}"
    if method == VEA_MODEL and layers_file is not None:
        arguments["layers_file"] = layers_file  # explicit: wins over the preset's layers
    arguments["attention_log"] = plan.out / "attention" / split / method
    return arguments


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.study != "seed":
        return paper_studies.run_study(args)
    plan = make_plan(args)
    local = all(Path(c).expanduser().exists() for c in plan.checkpoints.values()) and not args.finetune
    # benchmarks read their datasets from the hub (or its cache): only a VSR-only run on local checkpoints is offline
    pipeline = Pipeline("reproduce", dry_run=args.dry_run, offline=local and not plan.benchmarks)
    problems = check_inputs(plan, args)
    if problems and args.dry_run:
        for problem in problems:
            print(f"[reproduce] warning (a real run would stop here): {problem}", file=sys.stderr)
    elif problems:
        print("[reproduce] not started; fix these first:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    if not args.dry_run:
        plan.out.mkdir(parents=True, exist_ok=True)
    env = pipeline.env(VSR_DATA_DIR=str(plan.vsr_data_dir or "$VSR_DATA_DIR"))
    runs: list[Path] = []
    accuracies: dict[tuple[str, str], float] = {}
    for split in plan.splits:
        checkpoint = finetune(pipeline, plan, args, split) if args.finetune else plan.checkpoints[split]
        layers_file = None
        if VEA_MODEL in plan.methods and args.vea_layers == "profiled":
            layers_file = profile(pipeline, plan, args, split, checkpoint)
        tasks = [f"vsr_{split}_dev"] + ([f"vsr_{split}_test"] if args.test else [])
        for method in plan.methods:
            output = plan.out / "runs" / split / method
            results = pipeline.evaluate(
                f"evaluate {method} on {', '.join(tasks)}",
                method,
                model_args(method, split, checkpoint, layers_file, plan, args),
                tasks,
                output,
                env,
                batch_size=args.batch_size,
                limit=args.limit,
                resume=True,
            )
            runs.append(output)
            if results is not None:
                accuracies[(split, method)] = task_accuracy(results, tasks[0])
            if plan.benchmarks:  # the same model_args: the report merges both evaluations into one run
                benchmarks = plan.out / "benchmarks" / split / method
                pipeline.evaluate(
                    f"evaluate {method} on {', '.join(plan.benchmarks)}",
                    method,
                    model_args(method, split, checkpoint, layers_file, plan, args),
                    plan.benchmarks,
                    benchmarks,
                    env,
                    batch_size=args.batch_size,
                    limit=args.limit,
                    resume=True,
                    include_path=args.include_path,
                )
                runs.append(benchmarks)
    extra = ["--include_path", args.include_path] if args.include_path else []
    report = pipeline.report(
        "analysis report",
        runs,
        plan.out / "report",
        env,
        "--reference",
        str(STUDY_RESULTS),
        "--examples",
        "4",
        *extra,
    )
    if args.dry_run:
        return 0
    study = json.loads(STUDY_RESULTS.read_text())["accuracy"]
    pipeline.log("dev accuracy, ours vs reported by the study:")
    for (split, method), accuracy in accuracies.items():
        reported = study.get(f"vsr_{split}_dev", {}).get(method)
        pipeline.log(f"  {split:<9} {method:<18} {accuracy:.4f}   study {reported if reported is not None else '–'}")
    pipeline.log(f"report: {report} (every task's paired intervals and tests against qwen3vl, Holm-corrected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
