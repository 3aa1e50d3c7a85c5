"""Every run against its baseline on every task and metric: the numbers behind the report's overview, its per-task
tables and the viewer's "flipped" filter.

Per task and metric (the results JSON's ``metric,filter`` keys, in order; the first is the task's primary metric):
each run's value (the task's own aggregation of its documents, which equals its ``results.json``) with a 95%
bootstrap interval, and each non-baseline run against its baseline on the documents both answered
(:func:`analysis.stats.paired_metric`). Holm's correction runs over every comparison with a p-value. Documents
answered by only one run of a pair are counted and named; a metric missing from a run's samples, or whose
aggregation cannot be called, is said so, and its ``results.json`` value is still shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from analysis.metrics import MetricDefinition, TaskDefinition, task_definition
from analysis.runs import Run
from analysis.stats import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    MetricSummary,
    PairedComparison,
    document_scores,
    holm,
    paired_metric,
    summarise_metric,
)
from models.names import DEFAULT_BASELINE, is_baseline

SIGNIFICANCE = 0.05


@dataclass
class Pairing:
    """A run and its baseline on one task: the documents they share and those only one answered."""

    run: str
    baseline: str
    matched: list[int]
    only_baseline: list[int]
    only_run: list[int]


@dataclass
class MetricComparison:
    """One metric of one task across the runs."""

    task: str
    key: str  # "metric,filter"
    primary: bool
    definition: MetricDefinition | None
    reported: dict[str, object] = field(default_factory=dict)  # run -> results.json value
    summaries: dict[str, MetricSummary] = field(default_factory=dict)  # run -> recomputed
    comparisons: dict[str, PairedComparison] = field(default_factory=dict)  # non-baseline run -> against its baseline
    holm_p: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why something is not recomputed, named per run

    @property
    def metric(self) -> str:
        return self.key.partition(",")[0]

    def significant(self, run: str) -> bool:
        return math.isfinite(self.holm_p.get(run, math.nan)) and self.holm_p[run] < SIGNIFICANCE


@dataclass
class Flips:
    """Documents whose per-document score changed between a run and its baseline, by the score metric."""

    metric: str  # the metric whose per-document scores decide right and wrong
    binary: bool
    worse: list[int]  # binary: baseline right, run wrong
    better: list[int]  # binary: baseline wrong, run right


@dataclass
class TaskComparison:
    task: str
    runs: list[str]  # labels of the runs that evaluated the task
    baselines: list[str]
    pairings: dict[str, Pairing]  # non-baseline run -> its pairing
    metrics: list[MetricComparison]
    flips: dict[str, Flips | None] = field(default_factory=dict)
    definition_error: str = ""
    scores: DocumentScores | None = None
    not_metrics: list[str] = field(default_factory=list)  # results JSON keys the task's metric_list does not name

    @property
    def primary(self) -> MetricComparison | None:
        return self.metrics[0] if self.metrics else None


def baseline_runs(runs: list[Run], task: str, name: str) -> list[Run]:
    """The runs of ``task`` that are the baseline: labelled or modelled ``name``, else a baseline model's runs."""
    having = [run for run in runs if task in run.tasks]
    named = [run for run in having if run.label == name] or [run for run in having if run.model == name]
    return named or [run for run in having if is_baseline(run.model)]


def check_baseline(runs: list[Run], name: str) -> None:
    """A baseline named on the command line must be one of the runs (by label or model): a typo is refused naming the
    runs there, instead of silently comparing against the default's fallback. The default itself may fall back to
    the runs of a baseline model (``vlm_baseline``, ...)."""
    if name == DEFAULT_BASELINE or any(name in (run.label, run.model) for run in runs):
        return
    shown = ", ".join(sorted({run.label for run in runs} | {run.model for run in runs}))
    raise ValueError(f"--baseline {name}: no run is labelled or modelled so; the runs here: {shown}")


def baseline_for(run: Run, candidates: list[Run]) -> Run | None:
    """The baseline on the same checkpoint if there is one, else the first baseline run."""
    same = [c for c in candidates if c.args.get("pretrained") == run.args.get("pretrained")]
    return (same or candidates or [None])[0]


def compare_runs(
    runs: list[Run],
    baseline: str,
    resamples: int = DEFAULT_RESAMPLES,
    aggregated_resamples: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
    include_path: Sequence[str] = (),
) -> list[TaskComparison]:
    """Every task's comparison, Holm-corrected over all of them."""
    tasks = sorted({task for run in runs for task in run.tasks})
    comparisons = [
        _compare_task(task, runs, baseline, resamples, aggregated_resamples, seed, include_path)
        for task in tqdm(tasks, desc="paired statistics per task", unit="task", disable=len(tasks) < 2)
    ]
    every = [(row, label) for task in comparisons for row in task.metrics for label in row.comparisons]
    adjusted = holm([row.comparisons[label].p_value for row, label in every])
    for (row, label), p in zip(every, adjusted):
        row.holm_p[label] = p
    return comparisons


def _compare_task(
    task: str,
    runs: list[Run],
    baseline: str,
    resamples: int,
    aggregated_resamples: int,
    seed: int,
    include_path: Sequence[str],
) -> TaskComparison:
    having = [run for run in runs if task in run.tasks]
    candidates, pairings = pair_runs(task, runs, baseline)
    definition = task_definition(task, include_path)
    comparison = TaskComparison(
        task=task,
        runs=[run.label for run in having],
        baselines=[run.label for run in candidates],
        pairings=pairings,
        metrics=[],
        definition_error=definition.error,
    )
    keys = list(dict.fromkeys(key for run in having for key in run.tasks[task].keys))
    if not definition.error:  # what process_results returns beside the metrics (MMMU's submission records)
        comparison.not_metrics = [key for key in keys if key.partition(",")[0] not in definition.metrics]
        keys = [key for key in keys if key not in comparison.not_metrics]
    for index, key in enumerate(keys):
        comparison.metrics.append(
            _compare_metric(
                task, key, index == 0, having, comparison, definition, resamples, aggregated_resamples, seed
            )
        )
    comparison.scores = document_scores_of(task, runs, definition)
    comparison.flips = {label: flips_of(pairing, comparison.scores) for label, pairing in pairings.items()}
    return comparison


def _compare_metric(
    task: str,
    key: str,
    primary: bool,
    having: list[Run],
    comparison: TaskComparison,
    definition: TaskDefinition,
    resamples: int,
    aggregated_resamples: int,
    seed: int,
) -> MetricComparison:
    metric = key.partition(",")[0]
    known = definition.metrics.get(metric)
    row = MetricComparison(task, key, primary, known)
    for run in having:
        row.reported[run.label] = run.tasks[task].metrics.get(key)
    if known is None or known.aggregation is None:
        reason = definition.error or (known.reason if known else f"{metric} is not in the task's metric_list")
        row.problems.append(f"not recomputed: {reason}; the results JSON's values are shown")
        return row
    values: dict[str, dict[int, object]] = {}
    for run in having:
        logged = {d.doc_id: d.value(key) for d in run.tasks[task].ordered() if d.value(key) is not None}
        if not logged:
            row.problems.append(f"{run.label}: its samples hold no per-document value of {metric}")
            continue
        values[run.label] = logged
    for label, by_doc in values.items():
        ordered = [by_doc[doc_id] for doc_id in sorted(by_doc)]
        resampled = resamples if document_scores(ordered, known.aggregate) is not None else aggregated_resamples
        try:
            row.summaries[label] = summarise_metric(
                ordered, known.aggregate, resampled, seed, clusters=clusters_of(ordered), copy=copy_record
            )
        except Exception as error:  # noqa: BLE001 -- the task's own function failed on these documents
            row.problems.append(f"{label}: {known.aggregation_name}() failed on its documents ({error})")
            continue
        reported = row.reported.get(label)
        recomputed = row.summaries[label].value
        if isinstance(reported, (int, float)) and not _same(float(reported), recomputed):
            row.problems.append(
                f"{label}: recomputed {recomputed:.6g} from the samples, the results JSON says {reported:.6g}"
            )
    for label, pairing in comparison.pairings.items():
        if label not in values or pairing.baseline not in values:
            continue
        shared = [i for i in pairing.matched if i in values[label] and i in values[pairing.baseline]]
        if not shared:
            continue
        base = [values[pairing.baseline][doc_id] for doc_id in shared]
        mine = [values[label][doc_id] for doc_id in shared]
        mean = document_scores(base, known.aggregate) is not None and document_scores(mine, known.aggregate) is not None
        try:
            row.comparisons[label] = paired_metric(
                base,
                mine,
                known.aggregate,
                resamples if mean else aggregated_resamples,
                aggregated_resamples,
                seed,
                clusters=clusters_of(base),
                copy=copy_record,
            )
        except Exception as error:  # noqa: BLE001
            row.problems.append(f"{label} vs {pairing.baseline}: not compared ({error})")
    return row


def clusters_of(values: list) -> list | None:
    """Each document's cluster when records share a ``question_id`` (MME logs an image's two questions under one
    id and scores them as a pair: resampled apart, its aggregation fails), else None (documents resampled alone)."""
    if not values or not all(isinstance(v, dict) and "question_id" in v for v in values):
        return None
    keys = [str(v["question_id"]) for v in values]
    return keys if len(set(keys)) < len(keys) else None


def copy_record(value: object, repeat: int) -> object:
    """A cluster drawn again by the bootstrap: its records under a new ``question_id`` (a pair of its own)."""
    if isinstance(value, dict) and "question_id" in value:
        return {**value, "question_id": f"{value['question_id']}#{repeat}"}
    return value


def _same(reported: float, recomputed: float) -> bool:
    if math.isnan(reported) and math.isnan(recomputed):
        return True
    return math.isclose(reported, recomputed, rel_tol=1e-9, abs_tol=1e-12)


@dataclass
class DocumentScores:
    """Each run's per-document score on a task, by one metric: what "right", "wrong" and "flipped" mean there."""

    metric: str  # the metric, or "the records' score (METRIC, ...)"
    binary: bool  # every score is 0 or 1
    higher_is_better: bool
    scores: dict[str, dict[int, float]]  # run label -> doc_id -> score


def document_scores_of(task: str, runs: list[Run], definition: TaskDefinition) -> DocumentScores | None:
    """By the first metric whose per-document scores decompose it (the primary one when it does); else by the
    ``score`` its records carry (MME's); None when neither exists."""
    having = [run for run in runs if task in run.tasks]
    keys = list(dict.fromkeys(key for run in having for key in run.tasks[task].keys))
    for key in keys:
        known = definition.metrics.get(key.partition(",")[0])
        if known is None or known.aggregation is None:
            continue
        scores = {}
        for run in having:
            documents = run.tasks[task].ordered()
            values = [d.value(key) for d in documents]
            per_document = None if any(v is None for v in values) else document_scores(values, known.aggregate)
            if per_document is None:
                break
            scores[run.label] = dict(zip((d.doc_id for d in documents), per_document.tolist()))
        else:
            return DocumentScores(key.partition(",")[0], _binary(scores), known.higher_is_better, scores)
    # else the score each document's record carries, whichever metric logged it (MME logs each document under its
    # perception or its cognition metric)
    scores: dict[str, dict[int, float]] = {}
    named = []
    for run in having:
        scores[run.label] = {}
        for document in run.tasks[task].ordered():
            for key in keys:
                score = _record_score(document.value(key))
                if score is not None:
                    scores[run.label][document.doc_id] = score
                    named += [key.partition(",")[0]]
                    break
    if all(scores.values()):
        names = ", ".join(dict.fromkeys(named))
        known = definition.metrics.get(named[0])
        higher = known.higher_is_better if known else True
        return DocumentScores(f"the records' score ({names})", _binary(scores), higher, scores)
    return None


def _binary(scores: dict[str, dict[int, float]]) -> bool:
    return {value for by_doc in scores.values() for value in by_doc.values()} <= {0.0, 1.0}


def _record_score(value: object) -> float | None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("score"), (int, float))
        and not isinstance(value["score"], bool)
    ):
        return float(value["score"])
    return None


def flips_of(pairing: Pairing, scored: DocumentScores | None) -> Flips | None:
    """The documents both runs of ``pairing`` answered whose score got worse, and those whose score got better."""
    if scored is None or pairing.run not in scored.scores or pairing.baseline not in scored.scores:
        return None
    base, run = scored.scores[pairing.baseline], scored.scores[pairing.run]
    matched = [i for i in pairing.matched if i in base and i in run]
    sign = 1.0 if scored.higher_is_better else -1.0
    worse = [i for i in matched if sign * (run[i] - base[i]) < 0]
    better = [i for i in matched if sign * (run[i] - base[i]) > 0]
    return Flips(scored.metric, scored.binary, worse, better)


def pair_runs(task: str, runs: list[Run], baseline: str) -> tuple[list[Run], dict[str, Pairing]]:
    """The task's baseline runs, and each other run's pairing with its baseline (the same checkpoint preferred)."""
    having = [run for run in runs if task in run.tasks]
    candidates = baseline_runs(runs, task, baseline)
    pairings = {}
    for run in having:
        if run in candidates:
            continue
        base = baseline_for(run, candidates)
        if base is None:
            continue
        mine, theirs = set(run.tasks[task].documents), set(base.tasks[task].documents)
        pairings[run.label] = Pairing(
            run.label, base.label, sorted(mine & theirs), sorted(theirs - mine), sorted(mine - theirs)
        )
    return candidates, pairings
