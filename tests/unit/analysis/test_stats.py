"""Statistics against values computed by hand: exact McNemar, bootstrap intervals, paired comparisons."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis.attention import layer_selection
from analysis.runs import Run, assign_labels, parse_model_args
from analysis.stats import (
    bootstrap_interval,
    bootstrap_means,
    holm,
    mcnemar_exact,
    paired_metric,
    summarise_metric,
)
from vsr_tasks import scoring


@pytest.mark.parametrize(
    ("broken", "fixed", "expected"),
    [
        (1, 5, 2 * (1 + 6) / 64),  # P(X <= 1), X ~ Bin(6, 1/2) = 7/64
        (5, 1, 2 * (1 + 6) / 64),  # symmetric
        (0, 5, 2 / 32),
        (0, 1, 1.0),  # 2 * 1/2
        (3, 3, 1.0),  # 2 * 42/64 > 1, capped
        (0, 0, 1.0),  # no discordant pair
        (2, 10, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact_equals_the_binomial_by_hand(broken, fixed, expected):
    assert mcnemar_exact(broken, fixed) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_stays_exact_for_thousands_of_documents():
    # 2**1100 overflows a float; the integer computation must not
    assert mcnemar_exact(550, 550) == 1.0
    assert 0 < mcnemar_exact(500, 600) < 0.01


def test_bootstrap_interval_brackets_the_accuracy_and_is_reproducible():
    correct = np.array([1] * 7 + [0] * 3, dtype=float)
    low, high = bootstrap_interval(correct, n_resamples=2000, seed=3)
    assert low <= 0.7 <= high and low < high
    assert 0.3 <= low and high <= 1.0  # 10 documents: a wide but not absurd interval
    assert bootstrap_interval(correct, n_resamples=2000, seed=3) == (low, high)
    assert np.array_equal(bootstrap_means(correct, 2000, 3), bootstrap_means(correct, 2000, 3))
    assert not np.array_equal(bootstrap_means(correct, 2000, 3), bootstrap_means(correct, 2000, 4))
    # every resample mean is a multiple of 1/10 and lies in [0, 1]
    means = bootstrap_means(correct, 500, 0)
    assert np.allclose(means * 10, np.round(means * 10)) and means.min() >= 0 and means.max() <= 1


def test_bootstrap_of_a_constant_is_the_constant():
    assert bootstrap_interval(np.ones(5), n_resamples=100, seed=0) == (1.0, 1.0)
    assert bootstrap_interval(np.zeros(5), n_resamples=100, seed=0) == (0.0, 0.0)


def test_bootstrap_resamples_are_paired_across_runs():
    """Same seed and n -> same document indices, so run A's and run B's means move together."""
    a = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=float)
    b = a.copy()
    b[1] = 1  # b fixes one document
    difference = bootstrap_means(b, 1000, 7) - bootstrap_means(a, 1000, 7)
    np.testing.assert_allclose(difference, bootstrap_means(b - a, 1000, 7), atol=1e-12)


def mean_score(values: list[float]) -> float:
    return float(np.mean(values))


def test_vsr_metrics_by_hand():
    """VSR's metrics through the report's generic path: accuracy is a mean (resampled scores), F1 is not."""
    records = [
        {"prediction": True, "label": 1, "correct": True},  # tp
        {"prediction": True, "label": 0, "correct": False},  # fp
        {"prediction": False, "label": 1, "correct": False},  # fn
        {"prediction": None, "label": 0, "correct": False},  # unparseable
    ]
    accuracy = summarise_metric(records, scoring.accuracy, n_resamples=500, seed=0)
    assert (accuracy.n, accuracy.value, accuracy.kind) == (4, 0.25, "mean")
    assert accuracy.ci_low <= 0.25 <= accuracy.ci_high
    f1 = summarise_metric(records, scoring.f1_true, n_resamples=500, seed=0)
    assert (f1.value, f1.kind) == (2 * 1 / (2 * 1 + 1 + 1), "aggregate")
    assert summarise_metric(records, scoring.unparseable_rate, n_resamples=500, seed=0).value == 0.25


def test_identical_runs_give_p_one_and_zero_difference():
    correct = [1.0, 0.0, 1.0, 1.0, 0.0]
    c = paired_metric(correct, correct, mean_score, n_resamples=1000, seed=0)
    assert (c.difference, c.ci_low, c.ci_high, c.fixed, c.broken, c.p_value) == (0.0, 0.0, 0.0, 0, 0, 1.0)


def test_paired_comparison_of_a_known_table():
    # 10 documents: 3 both right, 1 both wrong, 5 fixed (baseline wrong -> right), 1 broken
    baseline = [1.0] * 3 + [0.0] + [0.0] * 5 + [1.0]
    method = [1.0] * 3 + [0.0] + [1.0] * 5 + [0.0]
    c = paired_metric(baseline, method, mean_score, n_resamples=2000, seed=0)
    assert (c.n, c.fixed, c.broken, c.test) == (10, 5, 1, "exact McNemar")
    assert c.difference == pytest.approx(0.4)
    assert c.p_value == pytest.approx(14 / 64)
    assert c.ci_low <= 0.4 <= c.ci_high
    assert c.ci_low > -0.2 and c.ci_high < 1.0  # per-document differences lie in {-1, 0, 1}, mostly +1


def test_a_paired_comparison_refuses_unpaired_input():
    with pytest.raises(ValueError):
        paired_metric([1.0, 0.0], [1.0], mean_score, n_resamples=10)


def test_model_args_are_split_like_lmms_eval():
    assert parse_model_args("pretrained=/a/b,layers=[17,20,24],hint='x, y',sharpen_weight=1.2") == {
        "pretrained": "/a/b",
        "layers": "[17,20,24]",
        "hint": "'x, y'",
        "sharpen_weight": "1.2",
    }


def test_labels_show_only_the_arguments_that_differ():
    runs = [
        Run("qwen3vl", "pretrained=/c", {"pretrained": "/c", "attention_log": "/l1"}),
        Run("qwen3vl_adaptvis", "", {"pretrained": "/c", "sharpen_weight": "1.2", "attention_log": "/l2"}),
        Run("qwen3vl_adaptvis", "", {"pretrained": "/c", "sharpen_weight": "1.5", "attention_log": "/l3"}),
    ]
    assign_labels(runs)
    assert [r.label for r in runs] == [
        "qwen3vl",
        "qwen3vl_adaptvis (sharpen_weight=1.2)",
        "qwen3vl_adaptvis (sharpen_weight=1.5)",
    ]


def test_heatmap_layers_default_to_the_last_third():
    assert layer_selection(28) == list(range(18, 28))  # ceil(28 / 3) = 10 layers
    assert layer_selection(4) == [2, 3]
    assert layer_selection(4, 0) == [0] and layer_selection(4, -1) == [3]
    with pytest.raises(ValueError, match="outside"):
        layer_selection(4, 4)


# ---- against direct computations: numpy's bootstrap with the same seed, scipy's exact binomial, every sign pattern
# or swap enumerated, Holm and MME's score by hand
def test_a_mean_of_binary_scores_bootstrap_and_mcnemar():
    base = [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0]
    run = [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    c = paired_metric(base, run, mean_score, n_resamples=1000, seed=3)
    indices = np.random.default_rng(3).integers(0, len(base), size=(1000, len(base)))
    deltas = (np.array(run, float) - np.array(base, float))[indices].mean(axis=1)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(np.percentile(deltas, [2.5, 97.5])), abs=1e-12)
    assert (c.fixed, c.broken) == (4, 2) and c.test == "exact McNemar"
    assert c.p_value == pytest.approx(binomtest(2, 6, 0.5).pvalue, abs=1e-15)
    assert c.difference == pytest.approx(2 / 12)


def test_graded_scores_use_an_exact_sign_flip_test():
    base = [0.3, 1.0, 0.6, 0.0, 1.0, 0.9, 0.3]
    run = [0.6, 1.0, 1.0, 0.3, 0.6, 1.0, 0.3]
    c = paired_metric(base, run, mean_score, n_resamples=500, seed=1, permutations=1000)
    differences = [r - b for b, r in zip(base, run) if r != b]  # 5 non-zero: 32 sign patterns, all enumerated
    observed = abs(sum(differences))
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, differences))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(differences))
    )
    assert c.test == "sign-flip permutation" and c.p_value == pytest.approx(extreme / 32, abs=1e-15)


def _f1(records):
    tp = sum(r["pred"] and r["label"] for r in records)
    fp = sum(r["pred"] and not r["label"] for r in records)
    fn = sum(not r["pred"] and r["label"] for r in records)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_an_aggregated_metric_paired_resamples_and_an_exact_permutation_test():
    labels = [1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
    base = [{"pred": p, "label": y} for p, y in zip([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], labels)]
    run = [{"pred": p, "label": y} for p, y in zip([1, 1, 0, 1, 0, 0, 1, 1, 1, 1], labels)]
    c = paired_metric(base, run, _f1, n_resamples=400, permutations=1024, seed=7)
    assert c.test == "paired permutation" and c.difference == pytest.approx(_f1(run) - _f1(base))
    indices = np.random.default_rng(7).integers(0, 10, size=(400, 10))
    deltas = [_f1([run[i] for i in row]) - _f1([base[i] for i in row]) for row in indices]
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(np.percentile(deltas, [2.5, 97.5])), abs=1e-12)
    observed, extreme = abs(_f1(run) - _f1(base)), 0
    for mask in range(2**10):  # every swap of documents between the runs
        first = [run[i] if mask >> i & 1 else base[i] for i in range(10)]
        second = [base[i] if mask >> i & 1 else run[i] for i in range(10)]
        extreme += abs(_f1(second) - _f1(first)) >= observed - 1e-12
    assert c.p_value == pytest.approx(extreme / 2**10, abs=1e-15)


def test_holm_on_a_known_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, float("nan"), 0.01]) == pytest.approx([0.5, float("nan"), 0.02], nan_ok=True)


def _mme_by_hand(records):
    """MME's score as its paper defines it: per category, the mean over images of accuracy + accuracy+."""
    by_category: dict[str, dict[str, list[float]]] = {}
    for r in records:
        by_category.setdefault(r["category"], {}).setdefault(r["question_id"], []).append(r["score"])
    total = 0.0
    for images in by_category.values():
        total += np.mean([100 * np.mean(s) + 100 * (sum(s) == 2) for s in images.values()])
    return float(total)


def test_mme_is_resampled_by_image_pairs():
    from lmms_eval.tasks.mme.utils import mme_aggregate_results

    from analysis.comparison import clusters_of, copy_record

    rng = np.random.default_rng(0)
    records = [
        {"question_id": f"{cat}/{i}.png", "category": cat, "score": float(rng.random() < 0.7)}
        for cat in ("color", "count")
        for i in range(6)
        for _ in range(2)
    ]
    clusters = clusters_of(records)
    assert clusters == [r["question_id"] for r in records]
    from loguru import logger

    logger.disable("lmms_eval")  # MME logs every category's score on each call
    try:
        summary = summarise_metric(records, mme_aggregate_results, 300, 4, clusters=clusters, copy=copy_record)
    finally:
        logger.enable("lmms_eval")
    assert summary.kind == "aggregate" and summary.value == pytest.approx(_mme_by_hand(records))
    # the same resamples by hand: images drawn with replacement (the indices bootstrap_means draws), both questions
    images = list(dict.fromkeys(clusters))
    members = {image: [r for r in records if r["question_id"] == image] for image in images}
    picks = np.random.default_rng(4).integers(0, len(images), size=(300, len(images)))
    values = []
    for row in picks:
        resample = []
        for k, image in enumerate(row):
            copy = sum(1 for earlier in row[:k] if earlier == image)
            resample += [{**r, "question_id": f"{r['question_id']}#{copy}"} for r in members[images[image]]]
        values.append(_mme_by_hand(resample))
    assert (summary.ci_low, summary.ci_high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
