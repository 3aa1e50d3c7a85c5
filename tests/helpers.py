"""Test utilities: VSR folders with generated images, and running the lmms-eval CLI."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
STRICT_VARIABLE = "VSR_TESTS_STRICT"  # .ci/run sets it: CI must run every test, never skip one


def require(condition: bool, reason: str) -> None:
    """Skip the test with ``reason`` when ``condition`` is false, or fail under ``VSR_TESTS_STRICT=1`` (CI)."""
    if condition:
        return
    if os.environ.get(STRICT_VARIABLE) == "1":
        pytest.fail(f"{reason} ({STRICT_VARIABLE}=1: CI runs every test)")
    pytest.skip(reason)


def shared_vsr_dir() -> Path:
    path = Path(os.environ.get("VSR_SHARED_DIR", REPO_ROOT.parent / "shared" / "vsr"))
    if not (path / "splits").is_dir():
        raise RuntimeError(f"the real VSR annotation files are expected in {path} (set VSR_SHARED_DIR)")
    return path


def write_random_image(path: Path, rng: np.random.Generator, min_side: int = 48, max_side: int = 160) -> None:
    height, width = (int(v) for v in rng.integers(min_side, max_side, 2))
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def build_vsr_data_dir(root: Path, shared: Path, eval_rows: int = 16, train_rows: int = 64, seed: int = 0) -> Path:
    """A VSR_DATA_DIR: the real split files plus random images for the first rows of each split."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    shutil.copytree(shared / "splits", root / "splits")
    for split_file in sorted((root / "splits").glob("*/*.jsonl")):
        limit = train_rows if split_file.stem == "train" else eval_rows
        with split_file.open() as handle:
            for index, line in enumerate(handle):
                if index >= limit:
                    break
                image = root / "images" / json.loads(line)["image"]
                if not image.exists():
                    write_random_image(image, rng)
    return root


def lmms_eval_env(vsr_data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if vsr_data_dir is not None:
        env["VSR_DATA_DIR"] = str(vsr_data_dir)
    env.update(extra)
    return env


def run_module(module: str, args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """Run ``python -m MODULE ARGS`` from the repository, output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_lmms_eval(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """Run ``python -m lmms_eval ARGS``; lmms-eval exits 0 even when evaluation fails, so callers check files."""
    return run_module("lmms_eval", args, env, cwd, timeout)


def find_results(output_path: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The results JSON and the samples (per task) that one lmms-eval run wrote under output_path."""
    results_files = glob.glob(str(output_path / "**" / "*_results.json"), recursive=True)
    if len(results_files) != 1:
        raise AssertionError(f"expected one results file under {output_path}, found {results_files}")
    results = json.loads(Path(results_files[0]).read_text())
    samples: dict[str, list[dict]] = {}
    for path in glob.glob(str(output_path / "**" / "*_samples_*.jsonl"), recursive=True):
        task = Path(path).stem.split("_samples_", 1)[1]
        samples[task] = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return results, samples


STEERING_RELATIONS = ("left of", "right of", "near")


def build_trained_checkpoint(root: Path, num_layers: int = 8, steps: int = 120) -> tuple[Path, Path]:
    """A tiny Qwen3-VL fine-tuned a few steps (``python -m finetune``) so that its answers carry real decisions.

    A random checkpoint's first-token confidence is ~0.004 (AdaptVis always smoothens) and its logit lens is
    flat (CLVS never stops). Here the train rows of a synthetic set are filtered so that the caption decides the
    answer for ``left of`` (always True) and ``right of`` (always False) while ``near`` keeps both labels: after
    120 steps the model is sure (~0.96) of the first two and unsure (~0.6-0.7) of ``near``, so a batch mixes both
    AdaptVis branches at the 0.8 threshold, and with 8 layers CLVS's logit lens stops it mid-stack (after layer 5).
    Returns (checkpoint, data folder). Deterministic: same seeds, one process, no workers.
    """
    from models.tiny import build_tiny_checkpoint
    from vsr_tasks.synthetic import generate

    data = root / "data"
    generate(data, n_train=96, n_dev=24, n_test=0, seed=0, image_size=64, relations=STEERING_RELATIONS,
             categories=["cat", "dog", "car"])  # fmt: skip
    train = data / "splits" / "random" / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines() if line.strip()]
    keep = [
        row
        for row in rows
        if row["relation"] == "near"
        or (row["relation"] == "left of" and row["label"] == 1)
        or (row["relation"] == "right of" and row["label"] == 0)
    ]
    train.write_text("".join(json.dumps(row) + "\n" for row in keep))
    tiny = build_tiny_checkpoint(root / "tiny", num_layers=num_layers, seed=0, tokenizer="words")
    output = root / "finetune"
    command = [
        sys.executable, "-m", "finetune", "--dataset_type", "random", "--vsr_data_dir", str(data),
        "--model_id", str(tiny), "--output_dir", str(output), "--max_steps", str(steps),
        "--per_device_batch_size", "8", "--gradient_accumulation_steps", "1", "--learning_rate", "5e-3",
        "--warmup_steps", "2", "--weight_decay", "0", "--eval_fraction", "0", "--save_steps", str(steps),
        "--dataloader_num_workers", "0", "--seed", "0", "--logging_steps", str(steps),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, env=lmms_eval_env(), capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"fine-tuning the test checkpoint failed: {completed.stderr[-4000:]}")
    return output / f"checkpoint-{steps}", data
