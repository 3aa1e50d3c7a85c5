"""Layer plots: where the last prompt row's attention goes (image vs text), layer by layer.

One figure per method and task, a 2 x 2 grid: rows image / text mass, columns correct / wrong
answers. The method is drawn as its mean with the interquartile band over samples, the baseline's
own correct (or wrong) answers overlaid in grey, and where the method logged the mass before its
intervention, that as a dotted line. Figures are built without pyplot (no global state, no display).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

OUTCOMES = ("correct", "wrong")
METHOD_COLOUR = "tab:blue"
BASELINE_COLOUR = "0.45"
BEFORE_COLOUR = "tab:orange"


@dataclass
class MassSet:
    """Per-sample, per-layer attention mass of one run on one group of documents."""

    image: np.ndarray  # [n, L]
    text: np.ndarray  # [n, L]
    image_before: np.ndarray | None = None  # [n, L] when every sample logged it
    text_before: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.image.shape[0])


def _band(axis, values: np.ndarray, colour: str, label: str, linestyle: str = "-", band: bool = True) -> None:
    layers = np.arange(values.shape[1])
    mean = values.mean(axis=0)
    axis.plot(layers, mean, color=colour, linestyle=linestyle, linewidth=1.8, label=label)
    if band:
        low, high = np.percentile(values, [25, 75], axis=0)
        axis.fill_between(layers, low, high, color=colour, alpha=0.22, linewidth=0)


def layer_mass_figure(
    path: Path,
    task: str,
    method_label: str,
    method: dict[str, MassSet | None],
    baseline_label: str | None = None,
    baseline: dict[str, MassSet | None] | None = None,
) -> Path:
    """Write the 2 x 2 layer plot of one method (``method[outcome]``, outcome in correct / wrong)."""
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True, sharey="row", squeeze=False)
    for column, outcome in enumerate(OUTCOMES):
        ours = method.get(outcome)
        theirs = (baseline or {}).get(outcome)
        for row, kind in enumerate(("image", "text")):
            axis = axes[row][column]
            axis.set_title(f"{kind} tokens, {outcome} answers (n={ours.n if ours else 0})", fontsize=11)
            axis.set_ylabel(f"last-row attention mass on {kind}")
            axis.grid(alpha=0.3)
            if row == 1:
                axis.set_xlabel("decoder layer")
            if ours is None or ours.n == 0:
                axis.text(0.5, 0.5, f"no {outcome} answers", ha="center", va="center", transform=axis.transAxes)
                continue
            if theirs is not None and theirs.n and theirs.image.shape[1] == ours.image.shape[1]:
                values = theirs.image if kind == "image" else theirs.text
                _band(axis, values, BASELINE_COLOUR, f"{baseline_label} (n={theirs.n})", linestyle="--")
            before = ours.image_before if kind == "image" else ours.text_before
            if before is not None:
                _band(axis, before, BEFORE_COLOUR, f"{method_label} before intervention", linestyle=":", band=False)
            _band(axis, ours.image if kind == "image" else ours.text, METHOD_COLOUR, f"{method_label} (n={ours.n})")
            axis.legend(fontsize=8, loc="best")
    for axis in axes[1]:
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"{task}: {method_label}, attention of the last prompt row per layer (mean, IQR band)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def document_layer_figure(path: Path, title: str, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """One document's last-row attention mass per layer, image (solid) and text (dashed), one colour per run.

    ``series``: run label -> (image mass ``[L]``, text mass ``[L]``). Small, for the viewer's side panel.
    """
    figure = Figure(figsize=(5.2, 3.2), layout="constrained")
    axis = figure.subplots()
    colours = [f"C{index}" for index in range(10)]
    for index, (label, (image, text)) in enumerate(series.items()):
        layers = np.arange(len(image))
        colour = colours[index % len(colours)]
        axis.plot(layers, image, color=colour, linewidth=1.8, label=f"{label}: image")
        axis.plot(layers, text, color=colour, linewidth=1.2, linestyle="--", label=f"{label}: text")
    axis.set_xlabel("decoder layer")
    axis.set_ylabel("last-row attention mass")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.xaxis.get_major_locator().set_params(integer=True)
    if series:
        axis.legend(fontsize=6, loc="best")
    else:
        axis.text(0.5, 0.5, "no attention log for this document", ha="center", va="center", transform=axis.transAxes)
    axis.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def forest_figure(path: Path, rows: list[tuple[str, list[tuple[str, float, float, float, bool]]]]) -> Path:
    """The paired differences at a glance: one line per task (its primary metric), one marker per run against its
    baseline with its 95% interval, one colour per run; a filled marker survives Holm's correction.

    ``rows``: (task label, [(run, difference, ci_low, ci_high, significant), ...]).
    """
    runs = list(dict.fromkeys(run for _, entries in rows for run, *_ in entries))
    colours = {run: f"C{index % 10}" for index, run in enumerate(runs)}
    height = max(2.2, 0.55 * len(rows) * max(1, len(runs)) ** 0.5 + 1.2)
    figure = Figure(figsize=(9, height), layout="constrained")
    axis = figure.subplots()
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else np.zeros(1)
    for y, (_, entries) in enumerate(rows):
        for run, difference, low, high, significant in entries:
            position = y + offsets[runs.index(run)]
            if np.isfinite(low) and np.isfinite(high):
                axis.plot([low, high], [position, position], color=colours[run], linewidth=1.6)
            axis.plot(
                [difference], [position], marker="o", markersize=6, color=colours[run],
                markerfacecolor=colours[run] if significant else "white", linestyle="none",
            )  # fmt: skip
    for run in runs:
        axis.plot([], [], marker="o", color=colours[run], linestyle="-", label=run)
    axis.axvline(0.0, color="0.4", linewidth=1, linestyle="--")
    axis.set_yticks(range(len(rows)))
    axis.set_yticklabels([label for label, _ in rows], fontsize=9)
    axis.invert_yaxis()
    axis.set_xlabel("difference to the baseline (run − baseline), 95% paired bootstrap interval")
    axis.grid(axis="x", alpha=0.3)
    if runs:
        axis.legend(
            fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="filled: survives Holm", title_fontsize=8
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
