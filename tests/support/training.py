"""The trained tiny checkpoints whose answers carry real decisions (AdaptVis' two branches, CLVS' mid-stack stop)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.commands import lmms_eval_env, run_module

STEERING_RELATIONS = ("left of", "right of", "near")

# Steps and learning rate that give each family's trained fixture its decisions (checked by test_shared_prefix):
# LLaVA's Llama decoder needs a gentler rate and longer to become sure of "left of" and "right of".
TRAINED_RECIPES = {"qwen3_vl": (120, 5e-3), "llava": (300, 2e-3), "llava_next": (300, 2e-3)}


def build_trained_checkpoint(root: Path, num_layers: int = 8, family: str = "qwen3_vl") -> tuple[Path, Path]:
    """A tiny checkpoint of ``family`` fine-tuned a few steps (``python -m finetune``) so that its answers carry real decisions.

    A random checkpoint's first-token confidence is ~0.004 (AdaptVis always smoothens) and its logit lens is
    flat (CLVS never stops). Here the train rows of a synthetic set are filtered so that the caption decides the
    answer for ``left of`` (always True) and ``right of`` (always False) while ``near`` keeps both labels: after
    its steps (:data:`TRAINED_RECIPES`) the model is sure (> 0.9) of the first two and unsure (< 0.8) of ``near``, so
    a batch mixes both AdaptVis branches at the 0.8 threshold, and with 8 layers CLVS's logit lens stops it mid-stack
    (after layer 5).
    Returns (checkpoint, data folder). Deterministic: same seeds, one process, no workers.
    """
    from testbed.tiny import build_tiny_checkpoint
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
    tiny = build_tiny_checkpoint(root / "tiny", num_layers=num_layers, seed=0, tokenizer="words", family=family)
    output = root / "finetune"
    steps, learning_rate = TRAINED_RECIPES[family]
    command = [
        "finetune", "--dataset_type", "random", "--vsr_data_dir", str(data),
        "--model_id", str(tiny), "--output_dir", str(output), "--max_steps", str(steps),
        "--per_device_batch_size", "8", "--gradient_accumulation_steps", "1", "--learning_rate", str(learning_rate),
        "--warmup_steps", "2", "--weight_decay", "0", "--eval_fraction", "0", "--save_steps", str(steps),
        "--dataloader_num_workers", "0", "--seed", "0", "--logging_steps", str(steps),
    ]  # fmt: skip
    completed = run_module(command[0], command[1:], lmms_eval_env())
    if completed.returncode != 0:
        raise RuntimeError(f"fine-tuning the test checkpoint failed: {completed.stderr[-4000:]}")
    return output / f"checkpoint-{steps}", data
