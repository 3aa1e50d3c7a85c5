"""Statistics for paired comparisons of any task's metrics: bootstrap intervals, exact McNemar, permutation tests.

Interventions change a handful of answers out of hundreds, so every number comes with its
uncertainty. All runs of a task are resampled with the same document indices (same seed, documents
in doc_id order), which makes the intervals of different methods paired, not independent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
_CHUNK = 1_000  # resamples drawn at once: bounds memory at CHUNK x n indices


def resample_indices(n: int, n_resamples: int, seed: int):
    """Rows of ``n`` indices drawn with replacement, ``n_resamples`` of them, a chunk at a time.

    They depend only on ``n``, ``n_resamples`` and ``seed``: two runs over the same documents in the same order
    get the same resampled document sets, whichever statistic is computed on them.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))


def bootstrap_means(
    values: Sequence[float] | np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of ``values`` (indices: :func:`resample_indices`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-D array of per-document values")
    return np.concatenate([values[rows].mean(axis=1) for rows in resample_indices(values.size, n_resamples, seed)])


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap samples."""
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values``."""
    return percentile_interval(bootstrap_means(values, n_resamples, seed))


def mcnemar_exact(broken: int, fixed: int) -> float:
    """Exact two-sided McNemar p-value: binomial test of the discordant pairs against p = 0.5.

    ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``, computed with
    integers so it stays exact for thousands of documents. No discordant pair: p = 1.
    """
    if broken < 0 or fixed < 0:
        raise ValueError("counts must be non-negative")
    n = broken + fixed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(broken, fixed) + 1))
    return min(1.0, 2 * tail / 2**n)


# --------------------------------------------------------------------------- any task's metrics
# The paired statistics of any lmms-eval metric, from the per-document values its samples file holds. One module
# for the report, the sweep and the viewer. A metric is a *mean* when each document, aggregated alone by the
# task's own function, gives a score whose mean is the metric (accuracy, exact match, ANLS, ...): its interval is
# the bootstrap of those scores, its test exact McNemar (0/1 scores) or a paired sign-flip permutation test. Any
# other metric (POPE's F1, MME's sums) is re-aggregated by the task's function on each paired resample, and tested
# by permuting each document's two answers between the runs.
DEFAULT_PERMUTATIONS = 1_000
MEAN_TOLERANCE = 1e-5  # lmms-eval rounds some metrics (MMMU) to 5 decimals


@dataclass(frozen=True)
class MetricSummary:
    """One run's metric on a task: the task's aggregation, its 95% bootstrap interval, how it was resampled."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    kind: str  # "mean" (per-document scores resampled) or "aggregate" (re-aggregated per resample)


@dataclass(frozen=True)
class PairedComparison:
    """A run against the baseline on one metric, on the documents both answered (in the same order)."""

    n: int
    difference: float  # run - baseline
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "exact McNemar", "sign-flip permutation", "paired permutation"
    fixed: int | None = None  # 0/1 scores: baseline 0, run 1
    broken: int | None = None  # 0/1 scores: baseline 1, run 0


def document_scores(values: Sequence, aggregate) -> np.ndarray | None:
    """Each document aggregated alone, when the metric is their mean; None when it is not such a mean (or a
    document cannot be aggregated alone)."""
    if not values:
        return None
    try:
        scores = np.array([aggregate([value]) for value in values], dtype=np.float64)
        total = float(aggregate(list(values)))
    except Exception:  # noqa: BLE001 -- a task's aggregation may fail on one document: not a mean then
        return None
    if not np.all(np.isfinite(scores)) or not math.isfinite(total):
        return None
    return scores if abs(total - float(scores.mean())) <= MEAN_TOLERANCE else None


def units_of(clusters: Sequence | None, n: int) -> list[list[int]]:
    """The resampling units: one per document, or the documents of each cluster together (in first-seen order)."""
    if clusters is None:
        return [[index] for index in range(n)]
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster keys for {n} documents")
    groups: dict = {}
    for index, key in enumerate(clusters):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def resampled_aggregates(
    values: Sequence,
    aggregate,
    n_resamples: int,
    seed: int,
    clusters: Sequence | None = None,
    copy: Callable[[Any, int], Any] | None = None,
) -> np.ndarray:
    """The task's aggregation of each bootstrap resample of ``values``: resampled by document (the indices of
    :func:`bootstrap_means`), or by cluster where ``clusters`` gives each document's (MME scores an image's two
    questions as a pair, so they are drawn together). ``copy(value, k)`` makes the k-th repeat (k >= 1) of a unit
    drawn more than once distinct where the aggregation groups by an id (MME would see four answers to one pair)."""
    units = units_of(clusters, len(values))
    out = []
    for rows in resample_indices(len(units), n_resamples, seed):
        for row in rows:
            drawn: dict[int, int] = {}
            resample = []
            for unit in row:
                repeat = drawn.get(int(unit), 0)
                drawn[int(unit)] = repeat + 1
                members = [values[i] for i in units[unit]]
                resample += [copy(v, repeat) for v in members] if copy is not None and repeat else members
            out.append(float(aggregate(resample)))
    return np.array(out, dtype=np.float64)


def summarise_metric(
    values: Sequence,
    aggregate,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    mean: bool = True,
    clusters: Sequence | None = None,
    copy: Callable[[Any, int], Any] | None = None,
) -> MetricSummary:
    """The metric over ``values`` (documents in doc_id order) and its 95% percentile bootstrap interval.

    ``mean``: resample the per-document scores when the metric is their mean (the same indices as every other run
    of the task); with ``False``, or when it is not a mean, re-aggregate every resample.
    """
    value = float(aggregate(list(values)))
    scores = document_scores(values, aggregate) if mean else None
    if scores is not None:
        low, high = percentile_interval(bootstrap_means(scores, n_resamples, seed))
        return MetricSummary(value, low, high, len(values), "mean")
    if not math.isfinite(value):
        return MetricSummary(value, math.nan, math.nan, len(values), "aggregate")
    low, high = _finite_interval(resampled_aggregates(values, aggregate, n_resamples, seed, clusters, copy))
    return MetricSummary(value, low, high, len(values), "aggregate")


def _finite_interval(samples: np.ndarray) -> tuple[float, float]:
    """The percentile interval of the finite resamples (a resample can leave a ratio undefined: 0/0)."""
    finite = samples[np.isfinite(samples)]
    return percentile_interval(finite) if finite.size else (math.nan, math.nan)


def sign_flip_p(differences: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED) -> float:
    """Two-sided paired sign-flip test of mean(differences) = 0: exact (every sign pattern) when there are at most
    ``permutations`` patterns of the non-zero differences, else Monte Carlo with ``(1 + hits) / (1 + permutations)``."""
    nonzero = np.asarray(differences, dtype=np.float64)
    nonzero = nonzero[nonzero != 0]
    if nonzero.size == 0:
        return 1.0
    observed = abs(nonzero.sum())
    tolerance = 1e-12 * max(1.0, observed)
    if 2**nonzero.size <= permutations:
        patterns = np.array(list(itertools.product((1.0, -1.0), repeat=nonzero.size)))
        return float(np.mean(np.abs(patterns @ nonzero) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(permutations, nonzero.size))
    hits = int(np.sum(np.abs(signs @ nonzero) >= observed - tolerance))
    return (1 + hits) / (1 + permutations)


def paired_permutation_p(
    base: Sequence,
    run: Sequence,
    aggregate,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
    clusters: Sequence | None = None,
) -> float:
    """Two-sided paired permutation test of aggregate(run) - aggregate(base) = 0: a permutation swaps each
    document's (or cluster's) two values between the runs. Exact (every swap pattern, the share at least as extreme)
    when there are at most ``permutations`` patterns; else Monte Carlo, each unit swapped with probability 1/2,
    ``(1 + hits) / (1 + permutations)``."""
    observed = abs(float(aggregate(list(run))) - float(aggregate(list(base))))
    if not math.isfinite(observed):
        return math.nan
    tolerance = 1e-12 * max(1.0, observed)
    units = units_of(clusters, len(base))

    def extreme(unit_swaps) -> bool:
        swap = np.zeros(len(base), dtype=bool)
        for unit, swapped in zip(units, unit_swaps):
            swap[unit] = bool(swapped)
        first = [r if s else b for b, r, s in zip(base, run, swap)]
        second = [b if s else r for b, r, s in zip(base, run, swap)]
        return abs(float(aggregate(second)) - float(aggregate(first))) >= observed - tolerance

    if 2 ** len(units) <= permutations:
        patterns = list(itertools.product((False, True), repeat=len(units)))
        return sum(extreme(pattern) for pattern in patterns) / len(patterns)
    rng = np.random.default_rng(seed)
    hits = sum(extreme(rng.random(len(units)) < 0.5) for _ in range(permutations))
    return (1 + hits) / (1 + permutations)


def paired_metric(
    base: Sequence,
    run: Sequence,
    aggregate,
    n_resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
    clusters: Sequence | None = None,
    copy: Callable[[Any, int], Any] | None = None,
) -> PairedComparison:
    """``run`` against ``base`` on the same documents (same order): the difference of the task's aggregation,
    its paired 95% bootstrap interval and a paired test (see the section comment)."""
    if len(base) != len(run) or not base:
        raise ValueError("a paired comparison needs two non-empty sequences of the same documents")
    difference = float(aggregate(list(run))) - float(aggregate(list(base)))
    base_scores, run_scores = document_scores(base, aggregate), document_scores(run, aggregate)
    if base_scores is not None and run_scores is not None:
        deltas = run_scores - base_scores
        low, high = percentile_interval(bootstrap_means(deltas, n_resamples, seed))
        binary = set(np.unique(np.concatenate([base_scores, run_scores]))) <= {0.0, 1.0}
        if binary:
            fixed = int(np.sum((base_scores == 0) & (run_scores == 1)))
            broken = int(np.sum((base_scores == 1) & (run_scores == 0)))
            return PairedComparison(
                len(base), difference, low, high, mcnemar_exact(broken, fixed), "exact McNemar", fixed, broken
            )
        p = sign_flip_p(deltas, permutations, seed)
        return PairedComparison(len(base), difference, low, high, p, "sign-flip permutation")
    if not math.isfinite(difference):
        return PairedComparison(len(base), difference, math.nan, math.nan, math.nan, "paired permutation")
    deltas = resampled_aggregates(run, aggregate, n_resamples, seed, clusters, copy) - resampled_aggregates(
        base, aggregate, n_resamples, seed, clusters, copy
    )
    low, high = _finite_interval(deltas)
    p = paired_permutation_p(base, run, aggregate, permutations, seed, clusters)
    return PairedComparison(len(base), difference, low, high, p, "paired permutation")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted): p_(k) * (m - k + 1), made monotone."""
    finite = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    order = sorted(finite, key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
