"""The attention log (``--model_args attention_log=FOLDER``), format in docs/ATTENTION_LOG.md: its writer and its
reader, the one place that knows the format.

Why here and not in ``interventions/``: the log is keyed by lmms-eval's task and doc id, which the attention code must
not know about. The recording itself is :class:`interventions.recording.LastRowRecorder`, an observer of the steered
attention; the writer turns one batch's recording into ``maps/{task}/{doc_id}.npz`` files and one JSON line per
sample in ``records.rank{R}.jsonl``. A line is written only after its ``.npz`` is complete and the file is flushed
after every batch, so a crash keeps every finished sample. Nothing of this runs when the log is off. The reader
(:func:`read_attention_log`, used by ``analysis``) merges the ranks; a folder may be shared by several models, so
records are filtered by model name, and a sample logged twice keeps its last line. This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECORDS_GLOB = "records.rank*.jsonl"


def records_file(folder: Path, rank: int) -> Path:
    """One process rank's record lines."""
    return folder / f"records.rank{rank}.jsonl"


def maps_file(task: str, doc_id: int) -> Path:
    """A sample's ``.npz`` maps, relative to the log's folder."""
    return Path("maps") / task / f"{doc_id}.npz"


class AttentionLogWriter:
    """Writes one process rank's records and maps; one recorder per batch (see :meth:`start`)."""

    def __init__(self, folder: str | Path, rank: int, model_name: str, num_layers: int, model_args: dict) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records_path = records_file(self.folder, rank)
        self.model_name = model_name
        self.num_layers = num_layers
        self.model_args = dict(model_args)
        self._recorder: Any = None  # interventions.recording.LastRowRecorder
        self._method_active = False

    def keep_answered(self, answered: set[tuple[str, int]]) -> int:
        """Drop this model's records of documents without a kept answer; returns how many.

        With the answer cache (``models.answer_cache``) a rerun computes exactly the documents without a kept answer;
        a record of such a document can only come from a run killed between writing the record and keeping the
        answer, and is written again. Dropping it first leaves one record per document. Rewritten in one replace.
        """
        if not self.records_path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.records_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # cut short by a kill
                dropped += 1
                continue
            if record.get("model") == self.model_name and (record["task"], int(record["doc_id"])) not in answered:
                dropped += 1
                continue
            kept.append(line)
        if dropped:
            partial = self.records_path.with_suffix(".jsonl.partial")
            partial.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            partial.replace(self.records_path)
        return dropped

    def start(self, method_active: bool) -> Any:
        """A fresh recorder for the next batch's steered generation (all layers)."""
        from interventions.recording import LastRowRecorder

        self._recorder = LastRowRecorder(layers=None)
        self._method_active = method_active
        return self._recorder

    def write(self, batch: Any, response: Any, texts: list[str]) -> None:
        """Append one record per sequence of ``batch`` (a ``PreparedBatch``) with its ``.npz`` maps."""
        recorder = self._recorder
        if recorder is None or not recorder.used:
            raise RuntimeError("attention log: the batch was answered without a recorded prefill")
        lines = []
        for b in range(batch.size):
            extras = response.extras[b] if b < len(response.extras) else {}
            lines.append(json.dumps(self._record(recorder, batch, b, extras, texts[b], response)))
        with self.records_path.open("a") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
        self._recorder = None

    def _record(self, recorder: Any, batch: Any, b: int, extras: dict, answer: str, response: Any) -> dict:
        task, doc_id = batch.task_names[b], int(batch.doc_ids[b])
        grids = [list(grid) for grid in batch.image_grids[b]]
        has_before = self._method_active and bool(grids)
        extra_maps = extras.get("maps", {})
        maps_file = (
            self._write_maps(recorder, b, task, doc_id, batch.image_tokens[b], has_before, extra_maps)
            if grids
            else None
        )
        return {
            "task": task,
            "doc_id": doc_id,
            "model": self.model_name,
            "model_args": {**self.model_args, **extras.get("model_args", {})},
            "num_layers": self.num_layers,
            "image_grids": grids,
            "image_regions": [[round(float(v), 2) for v in region] for region in batch.image_regions[b]]
            if b < len(batch.image_regions)
            else None,
            "image_sizes": [list(image.size) for image in batch.images[b]],
            "image_mass": recorder.image_mass(b),
            "text_mass": recorder.text_mass(b),
            "image_mass_before": recorder.image_mass(b, before=True) if has_before else None,
            "text_mass_before": recorder.text_mass(b, before=True) if has_before else None,
            "decision": extras.get("decision", {}),
            "answer": answer,
            "generated_tokens": response.generated_tokens[b] if b < len(response.generated_tokens) else None,
            "maps_file": maps_file,
        }

    def _write_maps(
        self,
        recorder: Any,
        b: int,
        task: str,
        doc_id: int,
        images: list[Any],
        has_before: bool,
        extra_maps: dict[str, np.ndarray],
    ) -> str:
        from interventions.grids import fold_images  # the writer runs beside the model; the reader needs no torch

        relative = maps_file(task, doc_id)
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        kinds = [("after", False)] + ([("before", True)] if has_before else [])
        for kind, before in kinds:
            attention = recorder.image_attention(b, before=before)  # [L, n_image_tokens]
            try:
                maps = fold_images(attention, images)
            except ValueError as error:
                raise RuntimeError(f"attention log: {task}/{doc_id}: {error}") from None
            for k, image_map in enumerate(maps):
                arrays[f"{kind}_{k}"] = image_map.numpy().astype(np.float16)
        arrays.update(extra_maps)  # a method's own maps (VEA: evidence_k, highlighted_k)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)
        return relative.as_posix()


def read_records(folder: str | Path) -> list[dict]:
    """Every record line of every rank in ``folder``, as written (for tests and quick looks)."""
    return [
        json.loads(line)
        for path in sorted(Path(folder).glob(RECORDS_GLOB))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


# ------------------------------------------------------------------ reading, typed (the analysis)
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
    image_sizes: list[list[int]] | None = None  # per image, the (width, height) the model got; absent in old logs

    def cover(self, index: int = 0) -> tuple[tuple[float, ...] | None, tuple[int, int] | None]:
        """Image ``index``'s region and the size of the image its pixels are counted in.

        A task may resize the file on disk before the model sees it (the VSR-protocol tasks do), so a region is
        only meaningful together with that size; a figure scales it to the picture it draws on.
        """
        region = tuple(self.image_regions[index]) if self.image_regions and index < len(self.image_regions) else None
        sizes = self.image_sizes or []
        size = (int(sizes[index][0]), int(sizes[index][1])) if index < len(sizes) else None
        return region, size


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
    files = sorted(folder.glob(RECORDS_GLOB))
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
                        image_sizes=raw.get("image_sizes"),
                    )
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                    raise AttentionLogError(f"{path}:{line_number}: not a valid attention record ({error})") from None
                records[(record.task, record.doc_id)] = record
    if not records:
        found = f" (it holds records of {', '.join(sorted(other_models))})" if other_models else ""
        raise AttentionLogError(f"no records of model {model} in {folder}{found}")
    return AttentionLog(folder=folder, records=records)
