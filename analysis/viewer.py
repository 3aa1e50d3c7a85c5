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

from analysis.attention import layer_selection
from analysis.comparison import DocumentScores, Flips, baseline_runs, document_scores_of, flips_of, pair_runs
from analysis.document_images import caption_of, document_pictures, resolve_image
from analysis.heatmaps import document_figure
from analysis.metrics import task_definition
from analysis.plots import document_layer_figure
from analysis.runs import Document, Run
from models.arguments import DEFAULT_MAX_NEW_TOKENS
from models.attention_log import AttentionLog
from models.names import DEFAULT_BASELINE

ALL = "all documents"
FLIPPED = "flipped against the baseline"
CHANGED = "changed by a method"
BASELINE_WRONG = "wrong for the baseline"
WORSE, BETTER = "worse than the baseline: ", "better than the baseline: "
DEFAULT_LAYER = -1  # the slider's "mean of the last third of the layers" (analysis report's default)


@dataclass
class DocumentView:
    """Everything the page shows for one document."""

    info: str  # markdown: task, doc, and the caption, label, relation, category (VSR) or question and target
    image: np.ndarray  # the original image(s) side by side, or a placeholder naming the missing file
    image_note: str
    answers: list[list[str]]  # per run: run, answer, confidence, verdict (VSR) or score
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
        baseline: str = DEFAULT_BASELINE,
        include_path: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.runs = runs
        self.logs = logs
        self.log_notes = log_notes
        self.cache_dir = Path(cache_dir)
        self.baseline_name = baseline
        self.include_path = tuple(str(path) for path in include_path)
        self.tasks = sorted({task for run in runs for task in run.tasks})
        self._scores: dict[str, DocumentScores | None] = {}
        self._key = hashlib.sha256("|".join(f"{r.label}:{r.results_files}" for r in runs).encode()).hexdigest()[:12]

    # ------------------------------------------------------------ documents and filters
    def baseline(self, task: str) -> Run | None:
        """The task's first baseline run (as the report chooses them: ``analysis.comparison.baseline_runs``)."""
        candidates = baseline_runs(self.runs, task, self.baseline_name)
        return candidates[0] if candidates else None

    def methods(self, task: str) -> list[Run]:
        base = self.baseline(task)
        return [run for run in self.runs if task in run.tasks and run is not base]

    def is_vsr(self, task: str) -> bool:
        return all(run.tasks[task].is_vsr for run in self.runs if task in run.tasks)

    def scores(self, task: str) -> DocumentScores | None:
        """Each run's per-document score on ``task`` (computed once per task)."""
        if task not in self._scores:
            self._scores[task] = document_scores_of(task, self.runs, task_definition(task, self.include_path))
        return self._scores[task]

    def flips(self, task: str) -> dict[str, Flips]:
        """Per run paired with a baseline: the documents whose score got worse and those whose score got better."""
        _, pairings = pair_runs(task, self.runs, self.baseline_name)
        found = {label: flips_of(pairing, self.scores(task)) for label, pairing in pairings.items()}
        return {label: flips for label, flips in found.items() if flips is not None}

    def documents(self, task: str, doc_id: int) -> dict[str, Document | None]:
        return {run.label: run.tasks[task].documents.get(doc_id) for run in self.runs if task in run.tasks}

    def doc_ids(self, task: str) -> list[int]:
        return sorted({doc_id for run in self.runs if task in run.tasks for doc_id in run.tasks[task].documents})

    def any_document(self, task: str, doc_id: int) -> Document | None:
        return next((d for d in self.documents(task, doc_id).values() if d is not None), None)

    def filters(self, task: str) -> list[str]:
        options = [ALL, FLIPPED]
        if not self.is_vsr(task):
            for label in self.flips(task):
                options += [f"{WORSE}{label}", f"{BETTER}{label}"]
            return options
        options += [CHANGED, BASELINE_WRONG] + [f"wrong for {run.label}" for run in self.methods(task)]
        documents = [self.any_document(task, doc_id) for doc_id in self.doc_ids(task)]
        options += [f"relation: {r}" for r in sorted({d.relation for d in documents if d and d.relation})]
        options += [f"category: {c}" for c in sorted({d.category for d in documents if d and d.category})]
        return options

    def filtered(self, task: str, choice: str) -> list[int]:
        """The doc_ids a filter keeps, ascending."""
        ids = self.doc_ids(task)
        if choice == ALL:
            return ids
        if choice == FLIPPED or choice.startswith((WORSE, BETTER)):
            flips = self.flips(task)
            if choice == FLIPPED:
                kept = {i for f in flips.values() for i in f.worse + f.better}
            else:
                label = choice.split(": ", 1)[1]
                if label not in flips:
                    raise ValueError(f"unknown filter {choice!r}")
                kept = set(flips[label].worse if choice.startswith(WORSE) else flips[label].better)
            return [doc_id for doc_id in ids if doc_id in kept]
        base = self.baseline(task)
        base_docs = base.tasks[task].documents if base is not None else {}

        def keep(doc_id: int) -> bool:
            documents = self.documents(task, doc_id)
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
        vsr = self.is_vsr(task)
        if vsr:
            label = "True" if any_document.label == 1 else "False"
            info = (
                f"**{task}**, doc **{doc_id}**: “{caption_of(task, any_document)}”  \n"
                f"label **{label}** · relation *{any_document.relation}* · category *{any_document.category}*"
            )
        else:
            question = "\n".join(f"> {line}" if line.strip() else ">" for line in any_document.input.splitlines())
            info = f"**{task}**, doc **{doc_id}**:\n\n{question}\n\ntarget: `{any_document.target}`"
        image, image_note = self._picture(task, any_document)
        scores = None if vsr else self.scores(task)
        answers = [
            self._answer_row(run, documents.get(run.label), task, doc_id, scores)
            for run in self.runs
            if task in run.tasks
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

    def _picture(self, task: str, document: Document) -> tuple[np.ndarray, str]:
        """The document's images side by side, and a note; a placeholder naming what is missing."""
        if document.vsr is not None:
            image_path, missing = resolve_image(task, document)
            if image_path is None:
                return placeholder(f"image not found: {missing}"), f"image not found: {missing}"
            with Image.open(image_path) as opened:
                return np.asarray(opened.convert("RGB")), f"`{image_path.name}`"
        pictures, why = document_pictures(task, document, self.include_path)
        if not pictures:
            return placeholder(f"no image: {why}"), f"no image: {why}"
        note = f"{len(pictures)} images, side by side" if len(pictures) > 1 else "the task's image"
        return side_by_side(pictures), note

    def _answer_row(
        self, run: Run, document: Document | None, task: str, doc_id: int, scores: DocumentScores | None
    ) -> list[str]:
        if document is None:
            return [run.label, "(not evaluated)", "", ""]
        record = self.logs.get(run.label).get(task, doc_id) if self.logs.get(run.label) is not None else None
        confidence = record.decision.get("confidence") if record is not None else None
        shown = "" if confidence is None else f"{confidence:.3f}"
        if document.vsr is not None:
            verdict = "right" if document.correct else "wrong"
        else:
            score = scores.scores.get(run.label, {}).get(doc_id) if scores is not None else None
            verdict = "–" if score is None else f"{score:g} ({scores.metric})"
        return [run.label, document.response.strip() or "(empty)", shown, verdict]

    def live_request(self, task: str, doc_id: int) -> tuple[str, list, int]:
        """What a live re-run feeds the model for a document: the prompt the task wrote, its images, and the
        task's max_new_tokens (as the runs' results JSON logged the task's generation settings; the models' default
        where the task names none, as in the run)."""
        document = self.any_document(task, doc_id)
        if document is None:
            raise ValueError(f"doc {doc_id} is in no run of {task}")
        config = next((run.tasks[task].config for run in self.runs if task in run.tasks), {})
        tokens = int((config.get("generation_kwargs") or {}).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        if document.vsr is not None:
            from vsr_tasks.prompt import build_prompt

            image_path, _ = resolve_image(task, document)
            prompt = document.input or build_prompt(caption_of(task, document))
            return prompt, [image_path] if image_path is not None else [], tokens
        pictures, _ = document_pictures(task, document, self.include_path)
        return document.input, [Image.fromarray(picture) for picture in pictures], tokens

    def _heatmap(self, task: str, doc_id: int, layer: int | None) -> tuple[Path | None, str]:
        missing = [
            f"{label}: {self.log_notes.get(label, 'no attention log')}"
            for label, log in self.logs.items()
            if log is None
        ]
        path = self.cache_dir / "figures" / f"{self._key}_{task}_{doc_id}_layer{'mean' if layer is None else layer}.png"
        if not path.is_file():
            made, note = document_figure(
                path, task, doc_id, [r for r in self.runs if task in r.tasks], self.logs, layer, self.include_path
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


def side_by_side(pictures: list[np.ndarray], height: int = 240) -> np.ndarray:
    """Several images in one row, each scaled to ``height`` (one image: as it is)."""
    if len(pictures) == 1:
        return pictures[0]
    scaled = []
    for picture in pictures:
        image = Image.fromarray(picture)
        width = max(1, round(image.width * height / image.height))
        scaled.append(np.asarray(image.resize((width, height))))
    gap = np.full((height, 8, 3), 255, dtype=np.uint8)
    row = [scaled[0]]
    for picture in scaled[1:]:
        row += [gap, picture]
    return np.concatenate(row, axis=1)


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
