"""Heatmaps: the last prompt row's attention over the image, per method, side by side for one document.

One drawing for the report, ``analysis heatmap`` and the viewer (logged runs and live re-runs alike), so a map
looks the same wherever it is shown. The map is the attention log's ``after_0`` (first image) averaged over the
chosen layers, stretched over the part of the original image its token grid covers (the log's ``image_regions``: the
whole image for Qwen's processors, which resize; the centre square for LLaVA-1.5's crop), scaled from the size the
model got (``image_sizes``) to the file drawn. Which file that is, is :mod:`analysis.document_images`' question;
when it has no answer the map is drawn alone and the figure says why.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.attention import describe_layers, layer_selection
from analysis.document_images import caption_of, document_pictures
from analysis.runs import Document, Run
from analysis.tables import excerpt
from models.attention_log import AttentionLog

PANEL_WIDTH = 3.6
MAP_CMAP = "inferno"


@dataclass
class Panel:
    """One column of the figure: a run's attention map, or an image (VEA's highlighted input)."""

    title: str
    attention: np.ndarray | None = None  # [grid_h, grid_w]
    picture: np.ndarray | None = None  # [H, W, 3] uint8 shown as is
    region: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1) of the original the map covers
    region_frame: tuple[int, int] | None = None  # (width, height) of the image the region's pixels are counted in

    def region_on(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region in the pixels of a picture of ``width`` x ``height``: the model may have got a resized copy
        of the file drawn (the VSR-protocol tasks resize to AdaptVis' size), so the logged region is scaled."""
        if self.region is None:
            return (0.0, 0.0, float(width), float(height))
        x0, y0, x1, y1 = self.region
        if self.region_frame is None:
            return (x0, y0, x1, y1)
        sx, sy = width / self.region_frame[0], height / self.region_frame[1]
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def mean_map(maps: dict[str, np.ndarray], layers: list[int], key: str = "after_0") -> np.ndarray | None:
    """Head-mean last-row attention of image 0, averaged over ``layers`` ([grid_h, grid_w], float64)."""
    if key not in maps:
        return None
    stack = np.asarray(maps[key], dtype=np.float64)
    return stack[layers].mean(axis=0)


def panels_for(
    run: Run, log: AttentionLog | None, task: str, doc_id: int, layer: int | None
) -> tuple[list[Panel], int]:
    """A run's panels for one document (its map; VEA also its highlighted image), and the layer count."""
    if log is None:
        return [], 0
    record = log.get(task, doc_id)
    if record is None:
        return [], 0
    maps = log.maps(record)
    layers = layer_selection(record.num_layers, layer)
    attention = mean_map(maps, layers)
    panels = []
    if attention is not None:
        region, frame = record.cover(0)
        panels.append(Panel(title=run.label, attention=attention, region=region, region_frame=frame))
    if "highlighted_0" in maps:
        panels.append(
            Panel(title=f"{run.label}: highlighted image", picture=np.asarray(maps["highlighted_0"], dtype=np.uint8))
        )
    return panels, record.num_layers


def _verdict(document: Document | None) -> str:
    if document is None:
        return "not evaluated"
    answer = {True: "True", False: "False", None: "unparseable"}[document.prediction]
    return f"{answer} ({'right' if document.correct else 'wrong'})"


def document_figure(
    path: Path,
    task: str,
    doc_id: int,
    runs: list[Run],
    logs: dict[str, AttentionLog | None],
    layer: int | None = None,
    include_path: Sequence[str] = (),
) -> tuple[Path | None, str]:
    """Write one document's figure; returns (path, note), path None when no run has a map for it."""
    documents = {run.label: run.tasks[task].documents.get(doc_id) for run in runs if task in run.tasks}
    any_document = next((d for d in documents.values() if d is not None), None)
    if any_document is None:
        return None, f"doc {doc_id} is not in any run's {task} samples"
    panels: list[Panel] = []
    num_layers = 0
    for run in runs:
        run_panels, run_layers = panels_for(run, logs.get(run.label), task, doc_id, layer)
        panels.extend(run_panels)
        num_layers = num_layers or run_layers
    if not any(panel.attention is not None for panel in panels):
        return None, f"doc {doc_id}: no attention map in any run's log"
    pictures, missing = document_pictures(task, any_document, include_path)
    image = pictures[0] if pictures else None
    if any_document.vsr is not None:
        label = "True" if any_document.label == 1 else "False"
        predictions = "; ".join(f"{name}: {_verdict(document)}" for name, document in documents.items())
        lines = [f'{task} doc {doc_id}: "{caption_of(task, any_document)}"', f"label: {label}.  {predictions}"]
    else:
        answers = "; ".join(
            f"{name}: {excerpt(document.response, 30) if document else 'not evaluated'}"
            for name, document in documents.items()
        )
        lines = [f"{task} doc {doc_id}: {excerpt(any_document.input, 160)}",
                 f"target: {excerpt(str(any_document.target), 60)}.  {answers}"]  # fmt: skip
    lines.append(describe_layers(layer_selection(num_layers, layer), num_layers) if num_layers else "")
    if image is None:
        lines.append(f"original image not found, map drawn alone: {missing}")
    draw_panels(path, image, panels, lines)
    return path, "" if image is not None else f"doc {doc_id}: original image not found ({missing})"


def draw_panels(path: Path, image: np.ndarray | None, panels: list[Panel], lines: list[str]) -> Path:
    """The heatmap figure: the original image, then each panel (a map stretched over the image, or a picture).

    One implementation for the report, ``analysis heatmap`` and the viewer (logged runs and live re-runs alike).
    """
    columns = len(panels) + (1 if image is not None else 0)
    figure = Figure(figsize=(max(PANEL_WIDTH * columns, 6.0), 4.9), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    index = 0
    if image is not None:
        axes[0].imshow(image)
        axes[0].set_title("original image", fontsize=10)
        axes[0].set_axis_off()
        index = 1
    for panel in panels:
        axis = axes[index]
        index += 1
        axis.set_title("\n".join(textwrap.wrap(panel.title, 34)), fontsize=10)
        if panel.picture is not None:
            axis.imshow(panel.picture)
            axis.set_axis_off()
            continue
        if image is not None:
            height, width = image.shape[:2]
            x0, y0, x1, y1 = panel.region_on(width, height)
            axis.imshow(image, extent=(0, width, height, 0))
            shown = axis.imshow(
                panel.attention, extent=(x0, x1, y1, y0), cmap=MAP_CMAP, alpha=0.6, interpolation="bilinear"
            )
            axis.set_xlim(0, width)
            axis.set_ylim(height, 0)
            axis.set_axis_off()
        else:
            shown = axis.imshow(panel.attention, cmap=MAP_CMAP, interpolation="nearest")
            axis.set_xlabel("visual token column")
            axis.set_ylabel("visual token row")
        colour_bar = figure.colorbar(shown, ax=axis, shrink=0.8, pad=0.02)
        colour_bar.set_label("attention mass per visual token", fontsize=8)
        colour_bar.ax.tick_params(labelsize=7)
    width_chars = int(max(PANEL_WIDTH * columns, 6.0) * 11)  # about 11 characters per inch at 10 pt
    wrapped = [part for line in lines if line for part in textwrap.wrap(line, width_chars)]
    figure.suptitle("\n".join(wrapped), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def choose_examples(
    task: str, baseline: Run | None, methods: list[Run], count: int, seed: int, candidates: set[int]
) -> list[int]:
    """Up to ``count`` doc_ids: those whose prediction some method changed from the baseline, then random ones."""
    changed = []
    if baseline is not None and task in baseline.tasks:
        base = baseline.tasks[task].documents
        for doc_id in sorted(candidates):
            for run in methods:
                document = run.tasks[task].documents.get(doc_id) if task in run.tasks else None
                if document is not None and doc_id in base and document.prediction != base[doc_id].prediction:
                    changed.append(doc_id)
                    break
    chosen = changed[:count]
    rest = sorted(candidates - set(chosen))
    random.Random(seed).shuffle(rest)
    return chosen + rest[: count - len(chosen)]
