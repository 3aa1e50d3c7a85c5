"""The attention log (``--model_args attention_log=FOLDER``), format in docs/ATTENTION_LOG.md.

Why here and not in ``interventions/``: the log is keyed by lmms-eval's task and
doc id, which the attention code must not know about. The recording itself is
:class:`interventions.recording.LastRowRecorder`, an observer of the steered
attention; this writer turns one batch's recording into ``maps/{task}/{doc_id}.npz``
files and one JSON line per sample in ``records.rank{R}.jsonl``. A line is written
only after its ``.npz`` is complete and the file is flushed after every batch, so a
crash keeps every finished sample. Nothing of this runs when the log is off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from interventions.recording import LastRowRecorder


class AttentionLogWriter:
    """Writes one process rank's records and maps; one recorder per batch (see :meth:`start`)."""

    def __init__(self, folder: str | Path, rank: int, model_name: str, num_layers: int, model_args: dict) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records_path = self.folder / f"records.rank{rank}.jsonl"
        self.model_name = model_name
        self.num_layers = num_layers
        self.model_args = dict(model_args)
        self._recorder: LastRowRecorder | None = None
        self._method_active = False

    def start(self, method_active: bool) -> LastRowRecorder:
        """A fresh recorder for the next batch's steered generation (all layers)."""
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

    def _record(self, recorder: LastRowRecorder, batch: Any, b: int, extras: dict, answer: str, response: Any) -> dict:
        task, doc_id = batch.task_names[b], int(batch.doc_ids[b])
        grids = [list(grid) for grid in batch.image_grids[b]]
        has_before = self._method_active and bool(grids)
        extra_maps = extras.get("maps", {})
        maps_file = self._write_maps(recorder, b, task, doc_id, grids, has_before, extra_maps) if grids else None
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
        recorder: LastRowRecorder,
        b: int,
        task: str,
        doc_id: int,
        grids: list[list[int]],
        has_before: bool,
        extra_maps: dict[str, np.ndarray],
    ) -> str:
        relative = Path("maps") / task / f"{doc_id}.npz"
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        kinds = [("after", False)] + ([("before", True)] if has_before else [])
        for kind, before in kinds:
            attention = recorder.image_attention(b, before=before).numpy()  # [L, n_image_tokens]
            sizes = [h * w for h, w in grids]
            if sum(sizes) != attention.shape[1]:
                raise RuntimeError(
                    f"attention log: {task}/{doc_id} has {attention.shape[1]} image tokens but its grids {grids} "
                    f"need {sum(sizes)}"
                )
            start = 0
            for k, (h, w) in enumerate(grids):
                arrays[f"{kind}_{k}"] = attention[:, start : start + h * w].reshape(-1, h, w).astype(np.float16)
                start += h * w
        arrays.update(extra_maps)  # a method's own maps (VEA: evidence_k, highlighted_k)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)
        return relative.as_posix()


def read_attention_log(folder: str | Path) -> list[dict]:
    """Every record of every rank in ``folder`` (for tests and quick looks; ``analysis/`` has its own reader)."""
    records = []
    for path in sorted(Path(folder).glob("records.rank*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return records
