"""What the viewer shows, as plain functions of the runs: filters, navigation, one document's panels.

The Gradio app (:mod:`analysis.view`) only wires these to widgets, so each callback is testable without a
browser, and every figure comes from the same drawing code as ``analysis report``
(:func:`analysis.heatmaps.document_figure`, :func:`analysis.plots.document_layer_figure`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from analysis.attention import AttentionLog, layer_selection
from analysis.heatmaps import caption_of, document_figure, resolve_image
from analysis.plots import document_layer_figure
from analysis.runs import Document, Run

ALL = "all documents"
CHANGED = "changed by a method"
BASELINE_WRONG = "wrong for the baseline"
DEFAULT_LAYER = -1  # the slider's "mean of the last third of the layers" (analysis report's default)


@dataclass
class DocumentView:
    """Everything the page shows for one document."""

    info: str  # markdown: task, doc, caption, label, relation, category
    image: np.ndarray  # the original image, or a placeholder naming the missing file
    image_note: str
    answers: list[list[str]]  # per run: run, answer, confidence, verdict
    heatmap: Path | None
    heatmap_note: str
    layer_plot: Path
    layers: dict = field(default_factory=dict)


class Viewer:
    """The runs of ``analysis view``, their attention logs and a cache folder for the figures."""

    def __init__(
        self,
        runs: list[Run],
        logs: dict[str, AttentionLog | None],
        log_notes: dict[str, str],
        cache_dir: Path,
        baseline: str = "qwen3vl",
    ) -> None:
        self.runs = runs
        self.logs = logs
        self.log_notes = log_notes
        self.cache_dir = Path(cache_dir)
        self.baseline_name = baseline
        self.tasks = sorted({task for run in runs for task in run.tasks})
        self._key = hashlib.sha256("|".join(f"{r.label}:{r.results_files}" for r in runs).encode()).hexdigest()[:12]

    # ------------------------------------------------------------ documents and filters
    def baseline(self, task: str) -> Run | None:
        having = [run for run in self.runs if task in run.tasks]
        return next((r for r in having if r.label == self.baseline_name), None) or next(
            (r for r in having if r.model == self.baseline_name), None
        )

    def methods(self, task: str) -> list[Run]:
        base = self.baseline(task)
        return [run for run in self.runs if task in run.tasks and run is not base]

    def documents(self, task: str, doc_id: int) -> dict[str, Document | None]:
        return {run.label: run.tasks[task].documents.get(doc_id) for run in self.runs if task in run.tasks}

    def doc_ids(self, task: str) -> list[int]:
        return sorted({doc_id for run in self.runs if task in run.tasks for doc_id in run.tasks[task].documents})

    def any_document(self, task: str, doc_id: int) -> Document | None:
        return next((d for d in self.documents(task, doc_id).values() if d is not None), None)

    def filters(self, task: str) -> list[str]:
        options = [ALL, CHANGED, BASELINE_WRONG] + [f"wrong for {run.label}" for run in self.methods(task)]
        documents = [self.any_document(task, doc_id) for doc_id in self.doc_ids(task)]
        options += [f"relation: {r}" for r in sorted({d.relation for d in documents if d and d.relation})]
        options += [f"category: {c}" for c in sorted({d.category for d in documents if d and d.category})]
        return options

    def filtered(self, task: str, choice: str) -> list[int]:
        """The doc_ids a filter keeps, ascending."""
        ids = self.doc_ids(task)
        base = self.baseline(task)
        base_docs = base.tasks[task].documents if base is not None else {}

        def keep(doc_id: int) -> bool:
            documents = self.documents(task, doc_id)
            if choice == ALL:
                return True
            if choice == CHANGED:
                reference = base_docs.get(doc_id)
                return reference is not None and any(
                    d is not None and d.prediction != reference.prediction
                    for label, d in documents.items()
                    if base is None or label != base.label
                )
            if choice == BASELINE_WRONG:
                return doc_id in base_docs and not base_docs[doc_id].correct
            if choice.startswith("wrong for "):
                document = documents.get(choice[len("wrong for ") :])
                return document is not None and not document.correct
            document = self.any_document(task, doc_id)
            if choice.startswith("relation: "):
                return document is not None and document.relation == choice[len("relation: ") :]
            if choice.startswith("category: "):
                return document is not None and document.category == choice[len("category: ") :]
            raise ValueError(f"unknown filter {choice!r}")

        return [doc_id for doc_id in ids if keep(doc_id)]

    # ------------------------------------------------------------ navigation
    @staticmethod
    def counter(position: int, docs: list[int]) -> str:
        return f"{position + 1} / {len(docs)}" if docs else "0 / 0"

    @staticmethod
    def step(position: int, delta: int, docs: list[int]) -> int:
        """Previous/next within the filtered set (clamped at its ends)."""
        return min(max(position + delta, 0), max(len(docs) - 1, 0))

    @staticmethod
    def locate(doc_id: int | float | None, docs: list[int]) -> tuple[int | None, str]:
        """The position of a typed doc_id in the filtered set, or None and the message the page shows."""
        if doc_id is None or (isinstance(doc_id, float) and (math.isnan(doc_id) or doc_id != int(doc_id))):
            return None, "type a whole doc id"
        if int(doc_id) not in docs:
            span = f"{docs[0]}..{docs[-1]}" if docs else "none"
            return None, f"doc {int(doc_id)} is not in this set ({len(docs)} documents, ids {span})"
        return docs.index(int(doc_id)), ""

    def num_layers(self, task: str) -> int:
        for log in self.logs.values():
            if log is not None:
                for (record_task, _), record in log.records.items():
                    if record_task == task:
                        return record.num_layers
        return 0

    # ------------------------------------------------------------ one document
    def document(self, task: str, doc_id: int, layer: int = DEFAULT_LAYER) -> DocumentView:
        chosen = None if layer is None or layer < 0 else int(layer)
        documents = self.documents(task, doc_id)
        any_document = next((d for d in documents.values() if d is not None), None)
        if any_document is None:
            raise ValueError(f"doc {doc_id} is in no run of {task}")
        label = "True" if any_document.label == 1 else "False"
        info = (
            f"**{task}**, doc **{doc_id}**: “{caption_of(task, any_document)}”  \n"
            f"label **{label}** · relation *{any_document.relation}* · category *{any_document.category}*"
        )
        image_path, missing = resolve_image(task, any_document)
        if image_path is not None:
            with Image.open(image_path) as opened:
                image, image_note = np.asarray(opened.convert("RGB")), f"`{image_path.name}`"
        else:
            image, image_note = placeholder(f"image not found: {missing}"), f"image not found: {missing}"
        answers = [
            self._answer_row(run, documents.get(run.label), task, doc_id) for run in self.runs if task in run.tasks
        ]
        heatmap, note = self._heatmap(task, doc_id, chosen)
        return DocumentView(
            info=info,
            image=image,
            image_note=image_note,
            answers=answers,
            heatmap=heatmap,
            heatmap_note=note,
            layer_plot=self._layer_plot(task, doc_id),
        )

    def _answer_row(self, run: Run, document: Document | None, task: str, doc_id: int) -> list[str]:
        if document is None:
            return [run.label, "(not evaluated)", "", ""]
        record = self.logs.get(run.label).get(task, doc_id) if self.logs.get(run.label) is not None else None
        confidence = record.decision.get("confidence") if record is not None else None
        verdict = "right" if document.correct else "wrong"
        shown = "" if confidence is None else f"{confidence:.3f}"
        return [run.label, document.response.strip() or "(empty)", shown, verdict]

    def _heatmap(self, task: str, doc_id: int, layer: int | None) -> tuple[Path | None, str]:
        missing = [
            f"{label}: {self.log_notes.get(label, 'no attention log')}"
            for label, log in self.logs.items()
            if log is None
        ]
        path = self.cache_dir / "figures" / f"{self._key}_{task}_{doc_id}_layer{'mean' if layer is None else layer}.png"
        if not path.is_file():
            made, note = document_figure(
                path, task, doc_id, [r for r in self.runs if task in r.tasks], self.logs, layer
            )
            if made is None:
                return None, "no heatmap: " + "; ".join([note] + missing)
        text = "; ".join(f"no map for {m}" for m in missing)
        layers = layer_selection(self.num_layers(task), layer) if self.num_layers(task) else []
        shown = f"layer {layer}" if layer is not None else f"mean of layers {layers[0]}-{layers[-1]}" if layers else ""
        return path, (shown + (f" ({text})" if text else "")).strip()

    def _layer_plot(self, task: str, doc_id: int) -> Path:
        path = self.cache_dir / "figures" / f"{self._key}_{task}_{doc_id}_layers.png"
        if not path.is_file():
            series = {}
            for run in self.runs:
                log = self.logs.get(run.label)
                record = log.get(task, doc_id) if log is not None else None
                if record is not None:
                    series[run.label] = (record.image_mass, record.text_mass)
            document_layer_figure(path, f"{task} doc {doc_id}: last-row attention per layer", series)
        return path


def placeholder(message: str, size: tuple[int, int] = (360, 240)) -> np.ndarray:
    """A grey picture stating why the real one is missing."""
    picture = Image.new("RGB", size, (225, 225, 225))
    draw = ImageDraw.Draw(picture)
    words, lines, line = message.split(), [], ""
    for word in words:
        if len(line) + len(word) > 44:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    draw.multiline_text((10, 10), "\n".join(lines), fill=(60, 60, 60))
    return np.asarray(picture)
