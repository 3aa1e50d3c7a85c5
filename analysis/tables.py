"""The report's tables as (headers, rows) of strings, one formatting convention for markdown and HTML alike."""

from __future__ import annotations

import math
from collections.abc import Callable

from analysis.runs import Document, Run
from analysis.stats import Comparison, Summary
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


def overview_table(labels: list[str], tasks: list[str], summaries: dict[str, dict[str, Summary]]) -> Table:
    """One row per run, one column per task: accuracy [95% CI] (n)."""
    body = []
    for label in labels:
        row = [label]
        for task in tasks:
            s = summaries[task].get(label)
            row.append(f"{number(s.accuracy)} [{number(s.ci_low)}, {number(s.ci_high)}] (n={s.n})" if s else "–")
        body.append(row)
    return ["run", *tasks], body


def results_table(rows: list[tuple[str, Summary]]) -> Table:
    """One row per run on a task: accuracy with its 95% bootstrap interval, F1 of True, unparseable rate, n."""
    headers = ["run", "accuracy", "95% CI", "F1 (True)", "unparseable", "n"]
    body = [
        [
            label,
            number(s.accuracy),
            f"[{number(s.ci_low)}, {number(s.ci_high)}]",
            number(s.f1_true),
            number(s.unparseable_rate),
            str(s.n),
        ]
        for label, s in rows
    ]
    return headers, body


def comparison_table(rows: list[tuple[str, str, Comparison, int, int]]) -> Table:
    """One row per method: (method, baseline, comparison, docs only in baseline, docs only in method)."""
    headers = ["run", "baseline", "Δ accuracy", "95% CI", "McNemar p", "fixed", "broken", "matched n", "unmatched docs"]
    body = []
    for label, baseline, c, only_base, only_method in rows:
        unmatched = (
            "none" if not (only_base or only_method) else f"{only_base} only in baseline, {only_method} only in run"
        )
        body.append(
            [
                label,
                baseline,
                signed(c.difference),
                f"[{signed(c.ci_low)}, {signed(c.ci_high)}]",
                p_value(c.p_value),
                str(c.fixed),
                str(c.broken),
                str(c.n),
                unmatched,
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
