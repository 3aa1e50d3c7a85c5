"""Test utilities: VSR folders with generated images, and running the lmms-eval CLI."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock
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


SHARED_VARIABLE = "VSR_SHARED_DIR"


def missing_shared_vsr_message() -> str | None:
    """Why the real VSR annotation files cannot be found (None when they can): the variable to set and how."""
    path = Path(os.environ.get(SHARED_VARIABLE, REPO_ROOT.parent / "shared" / "vsr"))
    if (path / "splits").is_dir():
        return None
    source = f"{SHARED_VARIABLE}={os.environ[SHARED_VARIABLE]}" if SHARED_VARIABLE in os.environ else "the default"
    return (
        f"the tests need VSR's real annotation files: {path / 'splits'} does not exist ({source}). "
        f"Set {SHARED_VARIABLE} to a folder holding VSR's splits/{{random,zeroshot}}/{{train,dev,test}}.jsonl, e.g. "
        f"export {SHARED_VARIABLE}=/path/to/visual-spatial-reasoning/data"
    )


def shared_vsr_dir() -> Path:
    problem = missing_shared_vsr_message()
    if problem is not None:
        raise RuntimeError(problem)
    return Path(os.environ.get(SHARED_VARIABLE, REPO_ROOT.parent / "shared" / "vsr"))


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Any:
    """``build(folder)`` once per test run, however many xdist workers ask: the first builds under a file lock,
    the others wait for it and reuse the folder. ``build`` returns what the fixture gives (paths, JSON-able)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one folder per run, above each worker's own
    folder = root / f"built-{name}"
    done = folder / ".built.json"
    with FileLock(str(folder) + ".lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            result = build(folder)
            done.write_text(json.dumps(result, default=str))
    result = json.loads(done.read_text())
    return result


ANSWER_WORDS = {"true": True, "yes": True, "false": False, "no": False}
SKIPPED_LEADING = " \t\r\n\"'`*(["
ANSWER_PREFIXES = ("the answer is", "the answer", "answer is", "answer")


def reference_answer(text: str) -> bool | None:
    """VSR's answer rule as the README states it, written independently of ``vsr_tasks.scoring.parse_answer``: after
    quotes, markdown and brackets, an optional "Answer:" / "The answer is", then True/False/yes/no as a whole word,
    any case; anything else says neither."""
    rest = (text or "").lstrip(SKIPPED_LEADING)
    lowered = rest.lower()
    for prefix in ANSWER_PREFIXES:
        if lowered.startswith(prefix):
            after = rest[len(prefix) :].lstrip(" \t\r\n")
            after = after[1:] if after[:1] in (":", "-") else after
            found = _answer_word(after.lstrip(SKIPPED_LEADING))
            if found is not None:
                return found
            break
    return _answer_word(rest)


def _answer_word(text: str) -> bool | None:
    lowered = text.lower()
    for word, meaning in ANSWER_WORDS.items():
        if lowered.startswith(word):
            following = lowered[len(word) : len(word) + 1]
            if not following or not (following.isalnum() or following == "_"):
                return meaning
    return None


def vsr_accuracy_from_samples(samples: list[dict]) -> float:
    """A VSR task's accuracy recomputed from its samples file with :func:`reference_answer` (not the code's parser)."""
    hits = [reference_answer(s["filtered_resps"]) == (s["target"] == "True") for s in samples]
    return sum(hits) / len(hits)


def evaluation_prompt(checkpoint: Path, caption: str, image: Path) -> tuple[str, Any]:
    """What an evaluation of a VSR document with ``caption`` feeds the model: (prompt text, input ids ``[N]``).

    Through the path lmms-eval takes: the task's ``doc_to_text`` and ``doc_to_visual``, then the baseline
    wrapper's ``prepare_batch`` (images placed by ``families.turns``, the chat template, the processor).
    """
    from families.turns import images_first, render_user_turn
    from models.registered import Qwen3VLBaseline as Qwen3VL
    from vsr_tasks.utils import vsr_doc_to_text

    wrapper = Qwen3VL(pretrained=str(checkpoint), device="cpu")
    with Image.open(image) as opened:
        visual = [opened.convert("RGB")]
    context = vsr_doc_to_text({"caption": caption})
    batch = wrapper.engine.prepare([context], [visual], [0], ["vsr_random_dev"])
    text = render_user_turn(wrapper.engine.processor, images_first(context, visual).content)
    return text, batch.inputs["input_ids"][0]


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


def run_cli(module: str, args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """Start ``python -m MODULE ARGS`` as a real subprocess from the repository, output captured.

    For the tests that cover a command line as a user starts it (one per command at least); the rest use
    :func:`run_module`.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_module(module: str, args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """``python -m MODULE ARGS`` from the repository, run inside this process (``tests.inprocess``), output captured.

    ``timeout`` is accepted for the subprocess form's signature; an in-process run has none.
    """
    from tests.inprocess import run_in_process

    del timeout
    return run_in_process(["-m", module, *args], env, cwd or REPO_ROOT)


def run_lmms_eval(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """``python -m lmms_eval ARGS`` in this process; lmms-eval exits 0 even when evaluation fails, so callers check
    files."""
    return run_module("lmms_eval", args, env, cwd, timeout)


def run_lmms_eval_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 300):
    """``lmms-eval ARGS``: the console script a user types, as a real subprocess of a fresh interpreter."""
    script = Path(sys.executable).parent / "lmms-eval"
    if not script.is_file():
        raise RuntimeError(f"no lmms-eval console script beside {sys.executable}: pip install -e '.[dev]' first")
    return subprocess.run(
        [str(script), *args], env=env, cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


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


# Steps and learning rate that give each family's trained fixture its decisions (checked by test_shared_prefix):
# LLaVA's Llama decoder needs a gentler rate and longer to become sure of "left of" and "right of".
TRAINED_RECIPES = {"qwen3_vl": (120, 5e-3), "llava": (300, 2e-3)}


def build_trained_checkpoint(root: Path, num_layers: int = 8, family: str = "qwen3_vl") -> tuple[Path, Path]:
    """A tiny Qwen3-VL fine-tuned a few steps (``python -m finetune``) so that its answers carry real decisions.

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
