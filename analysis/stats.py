"""Statistics for paired accuracy comparisons: bootstrap intervals and the exact McNemar test.

Interventions change a handful of answers out of hundreds, so every number comes with its
uncertainty. All runs of a task are resampled with the same document indices (same seed, documents
in doc_id order), which makes the intervals of different methods paired, not independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vsr_tasks import scoring

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
_CHUNK = 1_000  # resamples drawn at once: bounds memory at CHUNK x n indices


def bootstrap_means(
    values: Sequence[float] | np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of ``values``.

    The indices depend only on ``len(values)``, ``n_resamples`` and ``seed``: two runs
    over the same documents in the same order get the same resampled document sets.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-D array of per-document values")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        indices = rng.integers(0, values.size, size=(size, values.size))
        means[start : start + size] = values[indices].mean(axis=1)
    return means


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


@dataclass(frozen=True)
class Summary:
    """One run on one task: the results table's row cell."""

    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    f1_true: float
    unparseable_rate: float


def summarise(records: Sequence[dict], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Summary:
    """Accuracy with its bootstrap interval, F1 of True and the unparseable rate of VSR records.

    ``records`` must be in doc_id order so that runs share resampled document sets.
    """
    correct = np.array([bool(r["correct"]) for r in records], dtype=np.float64)
    low, high = bootstrap_interval(correct, n_resamples, seed)
    return Summary(
        n=len(records),
        accuracy=scoring.accuracy(records),
        ci_low=low,
        ci_high=high,
        f1_true=scoring.f1_true(records),
        unparseable_rate=scoring.unparseable_rate(records),
    )


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on the documents both answered."""

    n: int  # matched documents
    difference: float  # accuracy(method) - accuracy(baseline)
    ci_low: float
    ci_high: float
    fixed: int  # baseline wrong, method right
    broken: int  # baseline right, method wrong
    p_value: float  # exact McNemar


def compare(
    baseline_correct: Sequence[bool],
    method_correct: Sequence[bool],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Paired comparison on matched documents (same order in both sequences)."""
    base = np.asarray(baseline_correct, dtype=bool)
    method = np.asarray(method_correct, dtype=bool)
    if base.shape != method.shape or base.ndim != 1 or base.size == 0:
        raise ValueError("paired comparison needs two non-empty sequences of the same length")
    difference = method.astype(np.float64) - base.astype(np.float64)
    low, high = bootstrap_interval(difference, n_resamples, seed)
    fixed = int(np.sum(~base & method))
    broken = int(np.sum(base & ~method))
    return Comparison(
        n=int(base.size),
        difference=float(difference.mean()),
        ci_low=low,
        ci_high=high,
        fixed=fixed,
        broken=broken,
        p_value=mcnemar_exact(broken, fixed),
    )
