"""The report's tables as (headers, rows) of strings, one formatting convention for markdown and HTML alike."""

from __future__ import annotations

import math
from collections.abc import Callable

from analysis.runs import Document, Run
from vsr_tasks.categories import META_CATEGORIES

Table = tuple[list[str], list[list[str]]]


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def p_value(value: float) -> str:
    return f"{value:.4g}"


def excerpt(text: str, length: int = 90) -> str:
    """One line of at most ``length`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"


def _value(summary, reported) -> str:
    if summary is not None:
        return f"{number(summary.value)} [{number(summary.ci_low)}, {number(summary.ci_high)}] (n={summary.n})"
    if isinstance(reported, (int, float)):
        return f"{number(float(reported))} (results JSON; not recomputed)"
    return "–"


def _difference(comparison, holm_p: float | None, significant: bool) -> str:
    if comparison is None:
        return "–"
    mark = " *" if significant else ""
    return (
        f"{signed(comparison.difference)} [{signed(comparison.ci_low)}, {signed(comparison.ci_high)}], "
        f"p={p_value(comparison.p_value)}{mark}"
    )


def overview_table(labels: list[str], comparisons: list) -> tuple[list[str], list[list[str]], list[dict]]:
    """One row per task's primary metric: each run's value, then each compared run's difference to its baseline.

    Returns (headers, rows, entries): ``entries`` are the same numbers for summary.json and the forest plot.
    """
    compared = [label for label in labels if any(label in c.pairings for c in comparisons)]
    headers = ["task", "metric", *labels, *(f"{label} − baseline" for label in compared)]
    rows, entries = [], []
    for comparison in comparisons:
        row = comparison.primary
        if row is None:
            continue
        cells = [comparison.task, row.metric]
        cells += [_value(row.summaries.get(label), row.reported.get(label)) if label in comparison.runs else "–"
                  for label in labels]  # fmt: skip
        cells += [_difference(row.comparisons.get(label), row.holm_p.get(label), row.significant(label))
                  for label in compared]  # fmt: skip
        rows.append(cells)
        entries.append(
            {
                "task": comparison.task,
                "metric": row.metric,
                "values": {
                    label: (row.summaries[label].value if label in row.summaries else row.reported.get(label))
                    for label in comparison.runs
                },
                "comparisons": {
                    label: {
                        "baseline": comparison.pairings[label].baseline,
                        "difference": c.difference,
                        "ci_low": c.ci_low,
                        "ci_high": c.ci_high,
                        "p_value": c.p_value,
                        "test": c.test,
                        "holm_p": row.holm_p.get(label),
                        "significant": row.significant(label),
                    }
                    for label, c in row.comparisons.items()
                },
            }
        )
    return headers, rows, entries


def metric_table(comparison) -> Table:
    """Every metric of a task, one row per (metric, run): value [CI], the results JSON's, the paired comparison."""
    headers = ["metric", "run", "value [95% CI]", "results JSON", "Δ vs baseline [95% CI]", "p", "test", "Holm p"]
    body = []
    for row in comparison.metrics:
        for label in comparison.runs:
            summary, paired = row.summaries.get(label), row.comparisons.get(label)
            reported = row.reported.get(label)
            body.append(
                [
                    row.metric + (" (primary)" if row.primary else ""),
                    label,
                    f"{number(summary.value)} [{number(summary.ci_low)}, {number(summary.ci_high)}]"
                    if summary
                    else "–",
                    number(float(reported)) if isinstance(reported, (int, float)) else "–",
                    f"{signed(paired.difference)} [{signed(paired.ci_low)}, {signed(paired.ci_high)}]"
                    if paired
                    else "–",
                    p_value(paired.p_value) if paired else "–",
                    paired.test if paired else ("baseline" if label in comparison.baselines else "–"),
                    (p_value(row.holm_p[label]) + (" *" if row.significant(label) else "")) if paired else "–",
                ]
            )
    return headers, body


def _cell(documents: list[Document]) -> str:
    if not documents:
        return "–"
    correct = sum(d.correct for d in documents)
    return f"{correct / len(documents):.3f} (n={len(documents)})"


def breakdown(runs: list[Run], task: str, key: Callable[[Document], str], order: list[str] | None = None) -> Table:
    """Accuracy (and n) per group of documents, one column per run."""
    groups: set[str] = set()
    for run in runs:
        groups.update(key(d) for d in run.tasks[task].documents.values())
    ordered = [g for g in (order or []) if g in groups] + sorted(groups - set(order or []))
    headers = ["group"] + [run.label for run in runs]
    body = []
    for group in ordered:
        row = [group]
        for run in runs:
            row.append(_cell([d for d in run.tasks[task].documents.values() if key(d) == group]))
        body.append(row)
    return headers, body


def category_breakdown(runs: list[Run], task: str) -> Table:
    headers, body = breakdown(runs, task, lambda d: d.category, list(META_CATEGORIES))
    headers[0] = "meta-category"
    return headers, body


def relation_breakdown(runs: list[Run], task: str) -> Table:
    headers, body = breakdown(runs, task, lambda d: d.relation)
    headers[0] = "relation"
    return headers, body
