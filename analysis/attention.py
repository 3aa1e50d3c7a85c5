"""Reading the attention log (docs/ATTENTION_LOG.md): per-sample records and their per-layer maps.

``FOLDER/records.rank{R}.jsonl`` holds one line per sample (rank files are merged here) and
``FOLDER/maps/{task}/{doc_id}.npz`` the image-attention maps. A folder may be shared by several
models, so records are filtered by model name; a sample logged twice keeps its last line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class AttentionLogError(RuntimeError):
    """The attention log cannot be used; the message is shown in the report as the reason."""


@dataclass
class AttentionRecord:
    """One sample's line of ``records.rank{R}.jsonl``."""

    task: str
    doc_id: int
    model: str
    num_layers: int
    image_mass: np.ndarray  # [L]
    text_mass: np.ndarray  # [L]
    image_mass_before: np.ndarray | None
    text_mass_before: np.ndarray | None
    decision: dict = field(default_factory=dict)
    answer: str = ""
    maps_file: str | None = None
    image_regions: list[list[float]] | None = None  # per image, the part of the original its grid covers


@dataclass
class AttentionLog:
    """The records of one model in one attention-log folder, keyed by (task, doc_id)."""

    folder: Path
    records: dict[tuple[str, int], AttentionRecord]

    def get(self, task: str, doc_id: int) -> AttentionRecord | None:
        return self.records.get((task, doc_id))

    def maps(self, record: AttentionRecord) -> dict[str, np.ndarray]:
        """The record's npz arrays (``after_k``, ``before_k``, VEA's ``evidence_k`` / ``highlighted_k``); {} if absent."""
        if not record.maps_file:
            return {}
        path = self.folder / record.maps_file
        if not path.is_file():
            return {}
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}


def _floats(values: object) -> np.ndarray | None:
    if values is None:
        return None
    return np.asarray(values, dtype=np.float64)


def read_attention_log(folder: str | Path, model: str | None = None) -> AttentionLog:
    """The log in ``folder``, restricted to ``model``'s records when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AttentionLogError(f"attention log folder {folder} does not exist")
    files = sorted(folder.glob("records.rank*.jsonl"))
    if not files:
        raise AttentionLogError(f"no records.rank*.jsonl in {folder}")
    records: dict[tuple[str, int], AttentionRecord] = {}
    other_models: set[str] = set()
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    if model is not None and raw.get("model") != model:
                        other_models.add(str(raw.get("model")))
                        continue
                    record = AttentionRecord(
                        task=str(raw["task"]),
                        doc_id=int(raw["doc_id"]),
                        model=str(raw.get("model", "")),
                        num_layers=int(raw["num_layers"]),
                        image_mass=_floats(raw["image_mass"]),
                        text_mass=_floats(raw["text_mass"]),
                        image_mass_before=_floats(raw.get("image_mass_before")),
                        text_mass_before=_floats(raw.get("text_mass_before")),
                        decision=dict(raw.get("decision") or {}),
                        answer=str(raw.get("answer", "")),
                        maps_file=raw.get("maps_file"),
                        image_regions=raw.get("image_regions"),
                    )
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                    raise AttentionLogError(f"{path}:{line_number}: not a valid attention record ({error})") from None
                records[(record.task, record.doc_id)] = record
    if not records:
        found = f" (it holds records of {', '.join(sorted(other_models))})" if other_models else ""
        raise AttentionLogError(f"no records of model {model} in {folder}{found}")
    return AttentionLog(folder=folder, records=records)


def layer_selection(num_layers: int, layer: int | None = None) -> list[int]:
    """The layers a heatmap shows: ``layer`` (negative counts from the end), else the last third (rounded up)."""
    if layer is None:
        count = max(1, math.ceil(num_layers / 3))
        return list(range(num_layers - count, num_layers))
    index = layer + num_layers if layer < 0 else layer
    if not 0 <= index < num_layers:
        raise ValueError(f"--layer {layer} is outside the model's {num_layers} layers (0-{num_layers - 1})")
    return [index]


def describe_layers(layers: list[int], num_layers: int) -> str:
    """'layer 3' or 'layers 2-3 of 4 (mean)', for titles."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return f"layers {layers[0]}-{layers[-1]} of {num_layers} (mean)"
