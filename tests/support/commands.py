"""The project's command lines as the tests run them: in-process (fast) or as real subprocesses, and their outputs."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.environment import REPO_ROOT


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
    """``python -m MODULE ARGS`` from the repository, run inside this process (``tests.support.inprocess``), output captured.

    ``timeout`` is accepted for the subprocess form's signature; an in-process run has none.
    """
    from tests.support.inprocess import run_in_process

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


def train(data: Path, checkpoint: Path, output: Path, *extra: str) -> dict:
    """``python -m finetune`` in this process; accelerate's singletons are reset so runs stay independent."""
    from accelerate.state import AcceleratorState, GradientState

    from finetune.args import parse_args
    from finetune.train import run

    argv = ["--vsr_data_dir", str(data), "--model_id", str(checkpoint), "--output_dir", str(output)]
    argv += ["--dataloader_num_workers", "0", *extra]
    AcceleratorState._reset_state(reset_partial_state=True)  # a model wrapper may have made one already
    GradientState._reset_state()
    try:
        return run(parse_args(argv))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


# a few fast training steps on the colour set (tests.support.data.colour_vsr_set)
SMALL = ["--per_device_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_train_samples", "12"]
SMALL += ["--max_eval_samples", "4", "--eval_fraction", "0.2", "--learning_rate", "1e-3", "--warmup_steps", "1"]
