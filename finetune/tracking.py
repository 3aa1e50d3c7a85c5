"""Where metrics go: ``OUTPUT/log.jsonl`` always, Aim through accelerate's tracker with ``--log_with_aim``.

Also records which train rows each process trained on at each step
(``OUTPUT/data_order/rank-R.jsonl``), so a run's data can be audited and the
data-parallel split checked.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

AIM_MISSING = (
    "--log_with_aim: the 'aim' package is not installed in this Python. Install the optional extra "
    "(pip install 'vsr-attention-steering[aim]', or pip install aim), or drop --log_with_aim; "
    "metrics are always written to OUTPUT/log.jsonl."
)


def check_aim_available() -> None:
    """Fail before any model is loaded when Aim was asked for but is not installed."""
    if importlib.util.find_spec("aim") is None:
        raise ModuleNotFoundError(AIM_MISSING)


class MetricLog:
    """Appends one JSON line per logged step (main process only)."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.path = Path(output_dir) / "log.jsonl"
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


class DataOrderLog:
    """Per-process record of the train rows (their line numbers in train.jsonl) trained on at each step."""

    def __init__(self, output_dir: Path, rank: int, resume_step: int | None) -> None:
        self.path = Path(output_dir) / "data_order" / f"rank-{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():  # drop steps an interrupted run did after its last checkpoint
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, rows: list[int]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, "rows": rows}) + "\n")


def read_data_order(path: Path) -> dict[int, list[int]]:
    """``{step: rows}`` from a ``data_order/rank-R.jsonl`` file."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {record["step"]: record["rows"] for record in records}
