"""Each task's metrics and the aggregation functions its YAML names, found without loading the task's data.

The report recomputes every metric from the per-document values a run's samples file holds, with the task's own
aggregation (so that the point estimate equals the run's ``results.json``) and resamples the documents around it.
lmms-eval's ``TaskManager`` indexes the task folders (its own, ours, and ``--include_path``); the task's YAML is then
read as lmms-eval reads it (``!function`` resolved, ``include`` followed), without instantiating the task, which
would load its dataset. An aggregation that cannot be called with the per-document values alone (one that takes
lmms-eval's ``args``: such functions write submission files or read the run's settings) is reported as not
recomputed, with that reason.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from local_tasks.manager import task_manager


@dataclass(frozen=True)
class MetricDefinition:
    """One metric of a task: its aggregation (None: cannot be recomputed, ``reason`` says why)."""

    name: str
    aggregation: Callable[[list], Any] | None
    aggregation_name: str
    higher_is_better: bool
    reason: str = ""

    def aggregate(self, values: Sequence[Any]) -> float:
        """The task's aggregation of ``values`` (anything it prints or logs is swallowed), as a float."""
        if self.aggregation is None:
            raise RuntimeError(f"{self.name}: {self.reason}")
        with contextlib.redirect_stdout(io.StringIO()), _quiet_logs(self.aggregation):
            return float(self.aggregation(list(values)))


@contextlib.contextmanager
def _quiet_logs(function: Callable):
    """Silence the loguru messages of the aggregation's module (MME logs every category's score on each call: a
    thousand resamples would print thousands of lines)."""
    from loguru import logger

    module = getattr(function, "__module__", None) or ""
    logger.disable(module)
    try:
        yield
    finally:
        logger.enable(module)


@dataclass(frozen=True)
class TaskDefinition:
    """A task's metrics in its YAML's order (the first is the primary one); ``error`` when it cannot be read."""

    name: str
    metrics: dict[str, MetricDefinition] = field(default_factory=dict)
    error: str = ""


def task_definition(task: str, include_path: Sequence[str] = ()) -> TaskDefinition:
    """The metrics of ``task`` as its YAML declares them (lmms-eval's defaults where it names none)."""
    from lmms_eval.utils import load_yaml_config

    index = task_manager(include_path).task_index
    entry = index.get(task)
    if entry is None or not isinstance(entry.get("yaml_path"), str):
        return TaskDefinition(task, error=f"task {task} is not among lmms-eval's task definitions (--include_path?)")
    try:
        config = load_yaml_config(entry["yaml_path"], mode="full")
    except Exception as error:  # a task's utils.py may import what this environment lacks
        return TaskDefinition(task, error=f"task {task}'s YAML cannot be loaded ({type(error).__name__}: {error})")
    metrics = {}
    for item in config.get("metric_list") or []:
        name = item["metric"] if isinstance(item["metric"], str) else item["metric"].__name__
        metrics[name] = _definition(name, item)
    return TaskDefinition(task, metrics)


def _definition(name: str, item: dict) -> MetricDefinition:
    from lmms_eval.api.registry import get_aggregation, get_metric_aggregation, is_higher_better

    higher = item.get("higher_is_better")
    if higher is None:
        try:
            higher = is_higher_better(name)
        except Exception:  # noqa: BLE001 -- an unregistered metric: higher is better, as lmms-eval assumes
            higher = True
    aggregation = item.get("aggregation")
    try:
        if aggregation is None:
            function = get_metric_aggregation(name)
        elif isinstance(aggregation, str):
            function = get_aggregation(aggregation)
        else:
            function = aggregation
    except Exception as error:  # noqa: BLE001 -- lmms-eval raises bare exceptions for unknown names
        return MetricDefinition(name, None, str(aggregation), bool(higher), f"its aggregation is unknown ({error})")
    label = getattr(function, "__name__", str(function))
    if function is None:
        return MetricDefinition(name, None, label, bool(higher), "no aggregation is defined for it")
    parameters = inspect.signature(function).parameters
    if "args" in parameters:
        return MetricDefinition(
            name,
            None,
            label,
            bool(higher),
            f"its aggregation {label}() takes lmms-eval's run arguments (args), so it cannot be called on "
            "resampled documents",
        )
    required = [p for p in parameters.values() if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    if len(required) > 1:
        return MetricDefinition(
            name, None, label, bool(higher), f"its aggregation {label}() needs more than the per-document values"
        )
    return MetricDefinition(name, function, label, bool(higher))
