"""Documents, prompts, visuals and scoring through lmms-eval's own task machinery, for any ``generate_until`` task.

A sweep must score exactly as an evaluation does, so it builds the task's requests with
``build_all_requests`` (same prompts, same ``--limit`` semantics), runs the task's filters over the answers,
and scores with its ``process_results`` and aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local_tasks.manager import task_manager
from vsr_tasks.heldout import SPLIT_NAME as HELD_OUT_SPLIT


class TaskError(ValueError):
    """The task cannot be swept (unknown, a group, not generate_until, an evaluation split)."""


@dataclass
class SweepTask:
    name: str
    task: Any  # lmms_eval ConfigurableTask
    requests: list  # Instances, one per document
    split: str
    metric: str
    higher_is_better: bool

    @property
    def doc_ids(self) -> list[int]:
        return [request.doc_id for request in self.requests]

    @property
    def is_train_slice(self) -> bool:
        """Rows of a training split (our ``heldout`` slice, or a split named ``train...``): fit to tune on."""
        return self.split == HELD_OUT_SPLIT or self.split.startswith("train")

    def documents(self) -> dict[int, dict]:
        return {request.doc_id: self.task.eval_docs[request.doc_id] for request in self.requests}

    def score(self, answers: dict[int, str]) -> tuple[float, dict[int, str], dict[int, Any]]:
        """(metric over the documents, filtered answer per doc, per-doc value for the metric's aggregation)."""
        for request in self.requests:
            request.resps = [answers[request.doc_id]]
            request.filtered_resps = {}
        self.task.apply_filters()
        key = next(iter(self.requests[0].filtered_resps)) if self.requests else "none"
        documents = self.documents()
        filtered, values = {}, {}
        for request in self.requests:
            answer = request.filtered_resps[key]
            filtered[request.doc_id] = answer
            values[request.doc_id] = self.task.process_results(documents[request.doc_id], [answer])[self.metric]
        return self.aggregate(list(values.values())), filtered, values

    def aggregate(self, values: list) -> float:
        return float(self.task.aggregation()[self.metric](values))


def load_task(name: str, limit: int | None, metric: str | None = None, include_path: str | None = None) -> SweepTask:
    """The task's documents (the first ``limit``, as lmms-eval's ``--limit``) and its requests."""
    from lmms_eval.tasks import get_task_dict

    manager = task_manager(include_path)
    if name not in manager.all_tasks:
        raise TaskError(f"unknown task {name!r} (lmms-eval tasks list; --include_path for a folder of your own)")
    loaded = get_task_dict([name], manager)
    task = loaded.get(name)
    if task is None or isinstance(task, dict):
        raise TaskError(f"{name} is a group of tasks; sweep one task at a time")
    if task.OUTPUT_TYPE != "generate_until":
        raise TaskError(f"{name} is a {task.OUTPUT_TYPE} task; the models answer generate_until tasks only")
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    metrics = [item["metric"] for item in task.config.metric_list]
    chosen = metric or metrics[0]
    if chosen not in metrics:
        raise TaskError(f"--metric {chosen!r} is not a metric of {name}; it has {', '.join(metrics)}")
    split = task.config.test_split or task.config.validation_split
    higher = task.higher_is_better().get(chosen, True)
    return SweepTask(name, task, list(task.instances), split, chosen, bool(higher))
