"""Which VSR rows each task asks about, for the task class and for code that needs the rows without lmms-eval.

The task files (``vsr_*.yaml``) are the one declaration of what a task reads: its ``dataset_kwargs`` (the dataset
type, and AdaptVis' part where the task is one) and its ``test_split`` (a VSR split, or ``heldout``: fine-tuning's
held-out slice of train). The task class (``utils.VSRTask``) turns them into rows here, and the analysis, which finds
a logged document's row from its doc_id, reads the same file through :func:`task_rows`: a new task file is found by
both, and the two cannot disagree on which row a doc_id is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from local_tasks.adaptvis_split import part_indices
from vsr_tasks import ADAPTVIS_TASK_NAMES, HELDOUT_TASK_NAMES, TASK_NAMES, TASKS_DIR, data, heldout

EVERY_TASK = TASK_NAMES + HELDOUT_TASK_NAMES + ADAPTVIS_TASK_NAMES  # the tasks (not the groups) with rows


@dataclass(frozen=True)
class TaskRows:
    """Where a task's documents come from, in the order lmms-eval numbers them (doc_id)."""

    dataset_type: str  # random or zeroshot
    split: str  # the task's test_split
    adaptvis_part: str | None = None  # AdaptVis' tuning fifth or test rest of the split (local_tasks.adaptvis_split)

    @classmethod
    def from_config(cls, dataset_kwargs: dict, test_split: str) -> TaskRows:
        return cls(dataset_kwargs["dataset_type"], test_split, dataset_kwargs.get("adaptvis_part"))

    def load(self, root: Path | None = None) -> list[dict]:
        """The rows, from ``root`` (else VSR_DATA_DIR) when it holds ``splits/``, else the packaged copy."""
        held_out = self.split == heldout.SPLIT_NAME
        rows = data.load_split(self.dataset_type, "train" if held_out else self.split, root)
        if held_out:
            rows = heldout.held_out_rows(rows)
        if self.adaptvis_part is not None:
            rows = [rows[i] for i in part_indices(len(rows), self.adaptvis_part)]
        return rows


def task_rows(task: str) -> TaskRows | None:
    """Where ``task``'s documents come from, as its task file says; None for any name that is not a VSR task (a
    group, another benchmark's task)."""
    if task not in EVERY_TASK:
        return None
    config = _task_file(TASKS_DIR / f"{task}.yaml")
    return TaskRows.from_config(config["dataset_kwargs"], config["test_split"])


class _TaskFileLoader(yaml.SafeLoader):
    """Reads a task file without lmms-eval: ``!function utils.X`` is kept as its text, never imported."""


_TaskFileLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _task_file(path: Path) -> dict:
    """The task file's settings over those of the files it includes, merged as lmms-eval merges them (the file's own
    first, then its includes in the order listed)."""
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskFileLoader)
    included = config.pop("include", [])
    merged: dict = {}
    for name in reversed([included] if isinstance(included, str) else included):
        merged.update(_task_file(path.parent / name))
    return {**merged, **config}
