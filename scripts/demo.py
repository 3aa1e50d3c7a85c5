"""The whole experiment offline in minutes: ``python scripts/demo.py --out demo_out [--fast]``.

Steps (each a subprocess running the project's own command line, so the demo is also an end-to-end test):

1. ``python -m vsr_tasks.synthetic OUT/data``: a synthetic spatial-reasoning set in the VSR folder layout,
   with COCO-format boxes in ``OUT/data/annotations``.
2. ``python -m models.tiny OUT/tiny``: a randomly initialised tiny Qwen3-VL.
3. ``python -m finetune``: supervised fine-tuning on the synthetic train split (vision tower trained too).
4. ``python -m lmms_eval`` for ``qwen3vl``, ``qwen3vl_adaptvis``, ``qwen3vl_clvs`` and ``qwen3vl_vea`` on
   ``vsr_random_dev`` with ``--log_samples`` and the attention log (``OUT/attention/<model>``).
5. ``python -m analysis report OUT/runs/* --out OUT/report``.

``--fast`` runs the same pipeline on a small set with a few training steps (CI: it need not learn).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Pipeline, task_accuracy  # noqa: E402  (scripts/ is not a package)

TASK = "vsr_random_dev"
METHODS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea")


@dataclass(frozen=True)
class Budget:
    """Data size, image size and training schedule of one demo flavour."""

    n_train: int
    n_dev: int
    n_test: int
    image_size: int
    relations: str
    categories: str
    train_skew: float
    tokenizer: str
    layers: int
    max_steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int


# The full demo. What a tiny model trained from scratch on 2 CPU cores can learn in minutes (README, "Demo"):
# 256 px images and the word tokenizer, so the image is 64 of the prompt's ~110 tokens (at 64 px with one token
# per byte it is 4 of ~180 and drowns in the text), and a
# train split skewed toward one caption form (train_skew), without which the caption-image interaction never
# leaves chance. Dev is unskewed: a model that ignores the caption scores 50% on it.
FULL = Budget(
    n_train=6000,
    n_dev=200,
    n_test=200,
    image_size=256,
    relations="left of",
    categories="cat,dog",
    train_skew=0.8,
    tokenizer="words",
    layers=4,
    max_steps=1000,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=20,
)
# CI: the same pipeline end to end in well under 3 minutes; the model is not expected to learn.
FAST = Budget(
    n_train=64,
    n_dev=24,
    n_test=8,
    image_size=64,
    relations="left of,right of",
    categories="cat,dog,car",
    train_skew=0.5,
    tokenizer="words",
    layers=2,
    max_steps=4,
    batch_size=8,
    learning_rate=1e-3,
    warmup_steps=1,
)


PIPELINE = Pipeline("demo")


def generate_data(out: Path, budget: Budget, seed: int) -> Path:
    data = out / "data"
    PIPELINE.run(
        "1/5 synthetic data",
        [
            "-m", "vsr_tasks.synthetic", str(data),
            "--n_train", str(budget.n_train), "--n_dev", str(budget.n_dev), "--n_test", str(budget.n_test),
            "--seed", str(seed), "--image_size", str(budget.image_size), "--relations", budget.relations,
            "--categories", budget.categories, "--train_skew", str(budget.train_skew), "--overwrite",
        ],
    )  # fmt: skip
    return data


def build_tiny(out: Path, budget: Budget, seed: int) -> Path:
    tiny = out / "tiny"
    args = ["-m", "models.tiny", str(tiny), "--layers", str(budget.layers), "--seed", str(seed)]
    PIPELINE.run("2/5 tiny checkpoint", [*args, "--tokenizer", budget.tokenizer])
    return tiny


def finetune(out: Path, data: Path, tiny: Path, budget: Budget, seed: int) -> Path:
    """Fine-tune the tiny model on the synthetic train split; returns the final checkpoint.

    What the demo needs from ``python -m finetune``: a fixed number of optimizer steps (``--max_steps``), a
    high learning rate with a short linear warmup and no weight decay (the model starts random), the vision
    tower trained (no ``--freeze_vision``), no worker processes (2 cores), and ``trainer_state.json`` in the
    output folder naming the last checkpoint (a folder that ``from_pretrained`` and lmms-eval load).
    """
    output_dir = out / "finetune"
    PIPELINE.run(
        f"3/5 fine-tune ({budget.max_steps} steps, batch {budget.batch_size})",
        [
            "-m", "finetune", "--dataset_type", "random", "--vsr_data_dir", str(data), "--model_id", str(tiny),
            "--output_dir", str(output_dir), "--overwrite_output_dir",
            "--max_steps", str(budget.max_steps), "--per_device_batch_size", str(budget.batch_size),
            "--gradient_accumulation_steps", "1", "--learning_rate", str(budget.learning_rate),
            "--warmup_steps", str(budget.warmup_steps), "--weight_decay", "0", "--lr_scheduler_type", "linear",
            "--eval_fraction", "0.05", "--save_steps", str(budget.max_steps), "--save_total_limit", "1",
            "--logging_steps", str(max(1, budget.max_steps // 10)), "--dataloader_num_workers", "0",
            "--seed", str(seed),
        ],
    )  # fmt: skip
    state = output_dir / "trainer_state.json"
    if not state.exists():
        raise SystemExit(f"[demo] fine-tuning wrote no {state}")
    checkpoint = Path(json.loads(state.read_text())["last_checkpoint"])
    if not (checkpoint / "config.json").exists():
        raise SystemExit(f"[demo] fine-tuning named {checkpoint}, which holds no checkpoint")
    return checkpoint


def model_args(method: str, checkpoint: Path, out: Path, data: Path) -> dict:
    args = {"pretrained": checkpoint, "device": "cpu", "dtype": "float32", "batch_size": 8}
    args["attention_log"] = out / "attention" / method
    if method == "qwen3vl_vea":  # VEA picks its layers by profiling on the synthetic train boxes
        args.update(coco_annotations_dir=data / "annotations", vsr_data_dir=data, profile_samples=16)
    return args


def evaluate(out: Path, data: Path, checkpoint: Path, methods: list[str]) -> dict[str, float]:
    accuracies: dict[str, float] = {}
    for index, method in enumerate(methods, 1):
        run_dir = out / "runs" / method
        shutil.rmtree(run_dir, ignore_errors=True)
        results = PIPELINE.evaluate(
            f"4/5 evaluate {method} ({index}/{len(methods)})",
            method,
            model_args(method, checkpoint, out, data),
            [TASK],
            run_dir,
            PIPELINE.env(VSR_DATA_DIR=str(data)),
            batch_size=8,
        )
        accuracies[method] = task_accuracy(results, TASK)
    return accuracies


def majority_baseline(data: Path) -> float:
    rows = [json.loads(line) for line in (data / "splits" / "random" / "dev.jsonl").read_text().splitlines() if line]
    true = sum(int(row["label"]) for row in rows)
    return max(true, len(rows) - true) / len(rows)


def report(out: Path, data: Path, methods: list[str]) -> Path:
    runs = [out / "runs" / method for method in methods]  # this demo's runs only
    env = PIPELINE.env(VSR_DATA_DIR=str(data))  # the heatmaps draw on the synthetic images
    return PIPELINE.report("5/5 analysis report", runs, out / "report", env)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--fast", action="store_true", help="small set, few steps: the pipeline in < 3 minutes")
    parser.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default 0)")
    parser.add_argument("--max_steps", type=int, default=None, help="override the fine-tuning steps")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated models to evaluate (default: all four)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = FAST if args.fast else FULL
    if args.max_steps is not None:
        budget = Budget(**{**budget.__dict__, "max_steps": args.max_steps})
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log = PIPELINE.log
    log(f"{'fast' if args.fast else 'full'} demo into {out}")
    data = generate_data(out, budget, args.seed)
    tiny = build_tiny(out, budget, args.seed)
    checkpoint = finetune(out, data, tiny, budget, args.seed)
    methods = [m for m in args.methods.split(",") if m]
    accuracies = evaluate(out, data, checkpoint, methods)
    report_path = report(out, data, methods)
    baseline = majority_baseline(data)
    log(f"accuracy on {TASK} ({budget.n_dev} rows; majority baseline {baseline:.3f}):")
    for method, accuracy in accuracies.items():
        log(f"  {method:<18} {accuracy:.3f}  ({100 * (accuracy - baseline):+.1f} points over majority)")
    log(f"report: {report_path} (and {report_path.with_suffix('.html')})")
    runs = " ".join(str(out / "runs" / method) for method in methods)
    log("browse the runs, and re-run a document live, in the viewer (offline, http://127.0.0.1:7860):")
    log(f"  VSR_DATA_DIR={data} python -m analysis view {runs} --live {checkpoint}")
    log(f"total {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
