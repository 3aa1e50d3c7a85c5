"""Scoring layers: the AUROC of a layer's attention against the evidence labels, and the best layers kept.

The ranking's tie rule is VEA's (the higher layer), the AUROC the Mann-Whitney statistic with ties counted one half.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def top_layers(scores: Sequence[float], fraction: float) -> list[int]:
    """The ``ceil(fraction * L)`` best-scoring layers (at least one), ascending; NaN scores rank last.

    Equal scores: the higher layer is kept, as VEA's code keeps it (ZhiningLiu1998/VEA c03e995 ``vea/profiling.py:88``
    takes the last ``n_keep`` of an ascending ``np.argsort``; numpy's default sort keeps equal values in index order
    below 17 elements and most of the time above, not always: ours always)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"layer_top_fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * len(scores)))
    ranked = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i]), -scores[i], -i))
    return sorted(ranked[:keep])


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney, tied scores count one half); NaN without both classes."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    unique, inverse = torch.unique(sorted_scores, return_inverse=True)
    # average rank within each group of ties
    sums = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    counts = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(scores))
    ranks[order] = (sums / counts)[inverse]
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
