"""Checkpoints that lmms-eval loads directly, plus the state that makes resuming exact.

``OUTPUT/checkpoint-N/`` holds:

- the model (``config.json``, ``*.safetensors``, generation config) and the processor, so
  ``lmms-eval --model qwen3vl --model_args pretrained=OUTPUT/checkpoint-N`` works as is; with LoRA these
  are the MERGED weights (a plain Qwen3-VL, no PEFT needed to load it);
- ``adapter/`` (LoRA runs only): the PEFT adapter alone;
- ``training_state/``: accelerate's ``save_state`` (weights, optimizer, scheduler, RNG of every process;
  sharded under DeepSpeed / FSDP);
- ``trainer_state.json``: step, epoch, the run's data settings and the metric history.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
TRAINING_STATE = "training_state"
ADAPTER_DIR = "adapter"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (by step)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [path for _, path in sorted(found)]


def resolve_resume(output_dir: Path, resume: str) -> Path:
    """``latest`` -> the newest checkpoint of ``output_dir``; else the folder given, checked."""
    if resume == "latest":
        complete = [p for p in list_checkpoints(output_dir) if (p / STATE_FILE).is_file()]
        if not complete:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no complete checkpoint-N in {output_dir}")
        return complete[-1]
    folder = Path(resume)
    if not (folder / STATE_FILE).is_file() or not (folder / TRAINING_STATE).is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {folder}: not a finetune checkpoint (needs {STATE_FILE} and {TRAINING_STATE}/)"
        )
    return folder


def save_checkpoint(
    accelerator: Accelerator,
    model: Any,
    processor: Any,
    folder: Path,
    trainer_state: dict,
    use_lora: bool,
) -> None:
    """Write a loadable model + processor, the training state and ``trainer_state.json`` (all processes call)."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers shards under DeepSpeed ZeRO-3 / FSDP
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        unwrapped = accelerator.unwrap_model(model)
        if use_lora:
            unwrapped.save_pretrained(folder / ADAPTER_DIR)
            merged = copy.deepcopy(unwrapped).merge_and_unload()
            merged.save_pretrained(folder)
            del merged
        else:
            unwrapped.save_pretrained(folder, state_dict=state_dict)
        processor.save_pretrained(folder)
    accelerator.save_state(str(folder / TRAINING_STATE))
    if accelerator.is_main_process:
        (folder / STATE_FILE).write_text(json.dumps(trainer_state, indent=2))
    accelerator.wait_for_everyone()


def read_trainer_state(folder: Path) -> dict:
    return json.loads((Path(folder) / STATE_FILE).read_text())


def prune_checkpoints(output_dir: Path, keep_last: int | None, protect: Path | None) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints, never ``protect`` (the best one); returns the deleted."""
    if keep_last is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    doomed = [p for p in checkpoints[: max(0, len(checkpoints) - keep_last)] if protect is None or p != protect]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
