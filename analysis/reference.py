"""Published numbers to put beside ours (``python -m analysis report --reference FILE``).

Why: a reproduction is read against the table it reproduces. Two forms::

    {"name": "reported by the study",
     "accuracy": {"vsr_random_dev": {"qwen3vl": 0.8277, "qwen3vl_adaptvis": 0.8332, ...}, ...}}

    {"name": "reported by AdaptVis (project page)", "scale": 100,
     "results": [{"task": "whatsup_controlled_a", "model": "vlm_adaptvis", "pretrained": "llava-hf/llava-1.5-7b-hf",
                  "metric": "accuracy", "value": 84.9, "source": "index.html:436-446 (branch web)"}, ...]}

The first gives accuracies per task and model name; the second any metric (``accuracy`` when unnamed), optionally
for one checkpoint (``pretrained``, matched exactly against the run's model_args) and one preset (``preset``: two
runs of one model, AdaptVis and ScalingVis), in the paper's unit (``scale``:
100 for percentages; values are divided by it). Models are matched by model name (``qwen3vl_clvs``), not by run
label, so runs with any other model_args line up with the published row of their method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ReferenceValue:
    task: str
    model: str
    metric: str
    value: float  # in our unit (a share, not a percentage)
    pretrained: str | None = None
    source: str = ""
    preset: str | None = None  # the run's preset it belongs to (AdaptVis vs ScalingVis on one model)


@dataclass(frozen=True)
class Reference:
    name: str
    values: list[ReferenceValue] = field(default_factory=list)

    def get(
        self, task: str, model: str, metric: str = "accuracy", pretrained: str | None = None, preset: str | None = None
    ) -> float | None:
        for entry in self.values:
            if (
                (entry.task, entry.model, entry.metric) == (task, model, metric)
                and entry.pretrained in (None, pretrained)
                and entry.preset in (None, preset)
            ):
                return entry.value
        return None

    def metrics(self, task: str) -> list[str]:
        """The metrics of ``task`` the reference has numbers for, in the file's order."""
        return list(dict.fromkeys(entry.metric for entry in self.values if entry.task == task))


def load_reference(path: str | Path) -> Reference:
    """Read and check a reference file; a malformed one is refused with what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    name = str(data.get("name") or "reported")
    if "results" in data:
        return Reference(name, _results(path, data))
    accuracy = data.get("accuracy")
    if not isinstance(accuracy, dict) or not all(isinstance(models, dict) for models in accuracy.values()):
        raise ValueError(
            f"{path}: expected {{'name': ..., 'accuracy': {{task: {{model: accuracy}}}}}} or {{'name': ..., "
            "'results': [{task, model, value, ...}]}"
        )
    values = []
    for task, models in accuracy.items():
        for model, value in models.items():
            values.append(ReferenceValue(task, model, "accuracy", _checked(path, value, 1.0, f"{model} on {task}")))
    return Reference(name, values)


def _results(path: Path, data: dict) -> list[ReferenceValue]:
    scale = data.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ValueError(f"{path}: scale must be a positive number (100 for percentages), got {scale!r}")
    values = []
    for index, entry in enumerate(data["results"] or []):
        if not isinstance(entry, dict) or not {"task", "model", "value"} <= set(entry):
            raise ValueError(f"{path}: results[{index}] needs task, model and value")
        label = f"results[{index}] ({entry['model']} on {entry['task']})"
        values.append(
            ReferenceValue(
                task=str(entry["task"]),
                model=str(entry["model"]),
                metric=str(entry.get("metric") or "accuracy"),
                value=_checked(path, entry["value"], float(scale), label) / float(scale),
                pretrained=str(entry["pretrained"]) if entry.get("pretrained") else None,
                source=str(entry.get("source") or ""),
                preset=str(entry["preset"]) if entry.get("preset") else None,
            )
        )
    return values


def _checked(path: Path, value: object, scale: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= scale:
        raise ValueError(f"{path}: {what} must be a number in [0, {scale:g}], got {value!r}")
    return float(value)
