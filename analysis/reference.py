"""Published numbers to put beside ours (``python -m analysis report --reference FILE``).

Why: a reproduction is read against the table it reproduces. The file names whose numbers they are
and gives accuracies per task and model::

    {"name": "reported by the study",
     "accuracy": {"vsr_random_dev": {"qwen3vl": 0.8277, "qwen3vl_adaptvis": 0.8332, ...}, ...}}

Models are matched by model name (``qwen3vl_clvs``), not by run label, so runs with any model_args
line up with the published row of their method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Reference:
    name: str
    accuracy: dict[str, dict[str, float]]  # task -> model -> accuracy

    def get(self, task: str, model: str) -> float | None:
        return self.accuracy.get(task, {}).get(model)


def load_reference(path: str | Path) -> Reference:
    """Read and check a reference file; a malformed one is refused with what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg})") from None
    accuracy = data.get("accuracy") if isinstance(data, dict) else None
    if not isinstance(accuracy, dict) or not all(isinstance(models, dict) for models in accuracy.values()):
        raise ValueError(f"{path}: expected {{'name': ..., 'accuracy': {{task: {{model: accuracy}}}}}}")
    for task, models in accuracy.items():
        for model, value in models.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{path}: accuracy of {model} on {task} must be a number in [0, 1], got {value!r}")
    return Reference(name=str(data.get("name") or "reported"), accuracy=accuracy)
