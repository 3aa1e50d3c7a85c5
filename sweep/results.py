"""What a sweep writes: ``sweep.json``, ``answers.jsonl``, ``sweep.md``, a heatmap PNG and ``best_model_args.txt``.

Statistics (:mod:`analysis.stats`, the report's): each setting's metric with a 95% percentile bootstrap interval
over documents, and its paired difference to the neutral setting (same resampled documents) with a paired test.
When the metric is the mean of per-document scores (accuracy-like), the bootstrap resamples those scores and the
test is the exact McNemar (0/1 scores) or a sign-flip permutation test; otherwise each resample is re-aggregated
with the task's own aggregation and the test is a paired permutation test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.stats import paired_metric, summarise_metric
from sweep.tasks import SweepTask

EVAL_SPLIT_WARNING = (
    "WARNING: tuned on an evaluation split ({split} of {task}, --allow_eval_split): numbers reported on it "
    "overstate the gain; tune on a held-out train slice (vsr_random_heldout, vsr_zeroshot_heldout)"
)


@dataclass
class SettingResult:
    index: int
    setting: dict[str, Any]
    neutral: bool
    model_args: str
    metric: float
    n: int
    ci: tuple[float, float]
    difference: float | None = None  # against the neutral setting
    difference_ci: tuple[float, float] | None = None
    p_value: float | None = None
    test: str | None = None  # exact McNemar (0/1 scores), sign-flip or paired permutation (analysis.stats)
    fixed: int | None = None
    broken: int | None = None


def per_document_scores(task: SweepTask, values: dict[int, Any]) -> np.ndarray:
    """Each document's contribution: the aggregation of that document alone."""
    return np.array([task.aggregate([values[doc_id]]) for doc_id in sorted(values)], dtype=np.float64)


def summarise(
    task: SweepTask,
    settings: list[dict],
    neutral_index: int,
    model_args: list[str],
    scored: list[tuple[float, dict[int, str], dict[int, Any]]],
    n_resamples: int,
    seed: int,
) -> list[SettingResult]:
    """Each setting's interval and its paired comparison with the neutral one, as the report computes them
    (:mod:`analysis.stats`: the same resampled documents for every setting, the same tests)."""
    ordered = [[values[d] for d in sorted(values)] for _, _, values in scored]
    results = []
    for index, (setting, (metric, _, _)) in enumerate(zip(settings, scored)):
        summary = summarise_metric(ordered[index], task.aggregate, n_resamples, seed)
        result = SettingResult(
            index=index,
            setting=setting,
            neutral=index == neutral_index,
            model_args=model_args[index],
            metric=metric,
            n=len(ordered[index]),
            ci=(summary.ci_low, summary.ci_high),
        )
        if index != neutral_index:
            paired = paired_metric(ordered[neutral_index], ordered[index], task.aggregate, n_resamples, seed=seed)
            result.difference = paired.difference
            result.difference_ci = (paired.ci_low, paired.ci_high)
            result.p_value, result.test = paired.p_value, paired.test
            result.fixed, result.broken = paired.fixed, paired.broken
        results.append(result)
    return results


def best(results: list[SettingResult], higher_is_better: bool) -> SettingResult:
    """The best metric (ties: the earlier setting, the neutral one first)."""
    key = (lambda r: (-r.metric, r.index)) if higher_is_better else (lambda r: (r.metric, r.index))
    return min(results, key=key)


def write_outputs(
    out: Path,
    header: dict,
    task: SweepTask,
    results: list[SettingResult],
    scored: list[tuple[float, dict[int, str], dict[int, Any]]],
    grid: dict[str, list[float]],
    fixed_model_args: str,
) -> dict:
    """Every output file; returns the sweep.json content."""
    warning = EVAL_SPLIT_WARNING.format(split=task.split, task=task.name) if not task.is_train_slice else None
    top = best(results, task.higher_is_better)
    summary = {
        **({"warning": warning} if warning else {}),
        **header,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "n": results[0].n if results else 0,
        "best": {"setting": top.setting, "metric": top.metric, "model_args": top.model_args},
        "settings": [_result_dict(r) for r in results],
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with (out / "answers.jsonl").open("w", encoding="utf-8") as handle:
        if warning:
            handle.write(json.dumps({"warning": warning}) + "\n")
        for result, (_, filtered, _) in zip(results, scored):
            scores = dict(zip(sorted(filtered), per_document_scores(task, scored[result.index][2]).tolist()))
            for doc_id in sorted(filtered):
                line = {
                    "doc_id": doc_id,
                    "setting": result.setting,
                    "answer": filtered[doc_id],
                    "score": scores[doc_id],
                }
                handle.write(json.dumps(line, default=str) + "\n")
    (out / "sweep.md").write_text(_markdown(summary, results, task, warning), encoding="utf-8")
    best_args = top.model_args
    text = (f"# {warning}\n" if warning else "") + best_args + "\n"
    (out / "best_model_args.txt").write_text(text, encoding="utf-8")
    _heatmap(out / "heatmap.png", results, grid, top, task, warning)
    return summary


def _result_dict(result: SettingResult) -> dict:
    return {
        "setting": result.setting,
        "neutral": result.neutral,
        "model_args": result.model_args,
        "metric": result.metric,
        "n": result.n,
        "ci95": list(result.ci),
        "vs_neutral": None
        if result.neutral
        else {
            "difference": result.difference,
            "ci95": list(result.difference_ci),
            "p_value": result.p_value,
            "test": result.test,
            "fixed": result.fixed,
            "broken": result.broken,
        },
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _markdown(summary: dict, results: list[SettingResult], task: SweepTask, warning: str | None) -> str:
    lines = [f"**{warning}**", ""] if warning else []
    lines += [
        f"# Sweep: {summary['model']} on {task.name} ({summary['n']} documents, metric {task.metric})",
        "",
        f"Fixed model_args: `{summary['fixed_model_args']}`. Best: `{summary['best']['model_args']}` "
        f"({task.metric} {summary['best']['metric']:.4f}). Intervals: 95% bootstrap over documents; "
        "differences are paired with the neutral setting (same documents); p is the exact McNemar test for 0/1 "
        "scores, else a permutation test (column test).",
        "",
    ]
    names = list(dict.fromkeys(name for r in results for name in r.setting))  # grid parameters, then neutral ones
    lines.append(
        "| " + " | ".join(names + [task.metric, "95% CI", "Δ vs neutral", "95% CI", "p", "test", "note"]) + " |"
    )
    lines.append("|" + "---|" * (len(names) + 7))
    order = sorted(results, key=lambda r: (-r.metric if task.higher_is_better else r.metric, r.index))
    for r in order:
        diff_ci = f"[{_fmt(r.difference_ci[0], True)}, {_fmt(r.difference_ci[1], True)}]" if r.difference_ci else "–"
        p_value = "–" if r.p_value is None else f"{r.p_value:.3g}"
        cells = [str(r.setting.get(name, "")) for name in names]
        cells += [_fmt(r.metric), f"[{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]", _fmt(r.difference, True), diff_ci, p_value]
        cells.append(r.test or "–")
        cells.append("neutral (baseline)" if r.neutral else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _heatmap(
    path: Path,
    results: list[SettingResult],
    grid: dict[str, list[float]],
    top: SettingResult,
    task: SweepTask,
    warning: str | None,
) -> None:
    """The metric over the first two swept parameters (one row if only one varies), the others at their best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varied = [name for name, values in grid.items() if len(values) > 1] or list(grid)
    x_name = varied[0]
    y_name = varied[1] if len(varied) > 1 else None
    others = {name: top.setting[name] for name in grid if name not in (x_name, y_name)}
    xs, ys = grid[x_name], (grid[y_name] if y_name else [None])
    values = np.full((len(ys), len(xs)), np.nan)
    for r in results:
        if r.neutral and r.setting.keys() != grid.keys():
            continue
        if any(r.setting.get(name) != value for name, value in others.items()):
            continue
        if r.setting.get(x_name) in xs and (y_name is None or r.setting.get(y_name) in ys):
            values[ys.index(r.setting.get(y_name)) if y_name else 0, xs.index(r.setting[x_name])] = r.metric
    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(xs), 1.2 + 0.8 * len(ys)))
    image = axis.imshow(values, cmap="viridis", aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        if not np.isnan(value):
            axis.text(column, row, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
    axis.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    axis.set_xlabel(x_name)
    axis.set_yticks(range(len(ys)), [f"{y:g}" for y in ys] if y_name else [""])
    if y_name:
        axis.set_ylabel(y_name)
    fixed = ", ".join(f"{k}={v:g}" for k, v in others.items())
    title = f"{task.metric} on {task.name}" + (f"\n({fixed}, their best)" if fixed else "")
    axis.set_title(("tuned on an evaluation split!\n" if warning else "") + title, fontsize=9)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
