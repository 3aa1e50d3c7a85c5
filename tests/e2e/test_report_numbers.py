"""The report's numbers are the runs' own: for every run and every metric of its results JSON, the report holds
lmms-eval's number and recomputes the same one from the samples file (the point estimate its intervals and paired
tests are built around), on every evaluation the end-to-end files run (``tests.support.evaluations``, run once).

The cases are what could break the recomputation: VSR's own aggregations on two of the study's models (the report's
command line as a user starts it) and on all four (CLVS and VEA included, on the real Qwen vocabulary); the
family-detecting models on each other family; lmms-eval's installed benchmarks, whose aggregations are theirs, with
one that cannot be recomputed (it takes lmms-eval's run arguments) and results keys that are not metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from tests.support.evaluations import (
    CROSS_RUNS,
    FAMILY_LIMIT,
    FAMILY_MODELS,
    OTHER_FAMILIES,
    STUDY_PAIR_LIMIT,
    STUDY_PAIR_MODELS,
    USER_PATH_LIMIT,
    USER_PATH_MODELS,
)
from vsr_tasks.categories import META_CATEGORIES

pytestmark = pytest.mark.slow
VSR_METRICS = 3 + len(META_CATEGORIES)  # accuracy, f1_true, unparseable_rate, one accuracy per meta-category


@dataclass(frozen=True)
class Case:
    fixture: str  # the evaluation's fixture (e2e/conftest.py)
    recomputed: int  # (run, metric) pairs the report recomputes
    family: str | None = None  # family_evaluation's argument
    docs: int | None = None  # documents behind each task's primary metric, where every run and task has as many
    tolerance: float = 0.0  # VSR's aggregations give the results JSON's number to the bit
    not_in_metric_list: dict[str, tuple[str, ...]] = field(default_factory=dict)  # task -> results keys, in order
    not_recomputed: frozenset[tuple[str, str]] = frozenset()  # (task, key)


CASES = {
    "vsr-study-pair": Case("study_pair", len(STUDY_PAIR_MODELS) * VSR_METRICS, docs=STUDY_PAIR_LIMIT),
    "vsr-user-path": Case("user_path", len(USER_PATH_MODELS) * VSR_METRICS, docs=USER_PATH_LIMIT),
    **{
        f"vsr-{family}": Case("family_evaluation", len(FAMILY_MODELS) * VSR_METRICS, family, FAMILY_LIMIT)
        for family in OTHER_FAMILIES
    },
    "benchmarks": Case(
        "cross",
        len(CROSS_RUNS) * (5 + 1 + 1 + 2 + 1),  # POPE 5 metrics, CV-Bench 1, MMMU 1, MME 2, TextVQA 1
        tolerance=1e-12,  # lmms-eval's aggregations may sum in another order
        # MMMU's process_results returns them too
        not_in_metric_list={"local_mmmu_val": ("mmmu_acc_pass_at_k,none", "submission,none")},
        # its aggregation takes lmms-eval's args (it writes a submission file)
        not_recomputed=frozenset({("local_textvqa_val", "submission,none")}),
    ),
}


def _evaluation(request: pytest.FixtureRequest, case: Case) -> tuple[dict, str, dict[str, tuple[dict, dict]]]:
    """(summary, report.md, {the summary's run label: (results JSON, samples)})."""
    evaluation = request.getfixturevalue(case.fixture)
    if case.family is not None:
        evaluation = evaluation(case.family)
    if case.fixture == "cross":
        outputs, results = evaluation["runs"], evaluation["samples"]
    else:
        outputs, results = evaluation["runs"], evaluation["results"]
    summary = evaluation["summary"]
    by_label = {}
    for entry in summary["runs"]:
        name = next(n for n, path in outputs.items() if str(path) in entry["results_files"][0])
        by_label[entry["label"]] = results[name]
    assert len(by_label) == len(outputs)
    return summary, evaluation["md"], by_label


def _same(reported_here: object, reported: object) -> bool:
    both_nan = isinstance(reported, float) and math.isnan(reported) and isinstance(reported_here, float)
    return reported_here == reported or (both_nan and math.isnan(reported_here))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_number_of_the_report_is_the_results_jsons(request, case):
    summary, markdown, runs = _evaluation(request, case)
    tasks = summary["tasks"]
    assert sorted(tasks) == sorted({task for results, _ in runs.values() for task in results["results"]})
    recomputed = 0
    for label, (results, samples) in runs.items():
        for task, metrics in results["results"].items():
            for key, reported in metrics.items():
                if key == "alias" or "_stderr" in key:
                    continue
                if key in case.not_in_metric_list.get(task, ()):
                    assert key not in tasks[task]["metrics"]
                    continue
                metric = tasks[task]["metrics"][key]
                entry = metric["runs"][label]
                assert _same(entry["results_json"], reported), (task, key, label)
                if (task, key) in case.not_recomputed:
                    assert not metric["recomputed"] and "value" not in entry
                    assert any("not recomputed" in p and "run arguments (args)" in p for p in metric["problems"])
                    continue
                expected = pytest.approx(reported, rel=case.tolerance, abs=case.tolerance, nan_ok=True)
                assert entry["value"] == expected, (task, key, label)
                recomputed += 1
            primary, metric = next((k, m) for k, m in tasks[task]["metrics"].items() if m["primary"])
            if case.docs is not None:  # (MME's perception score is over its perception documents only)
                assert metric["runs"][label]["n"] == len(samples[task]) == case.docs
            assert f"| {primary.partition(',')[0]} (primary) | {label} | {metrics[primary]:.4f} [" in markdown
    assert recomputed == case.recomputed
    for keys in case.not_in_metric_list.values():
        names = ", ".join(key.partition(",")[0] for key in keys)
        assert f"the results JSON also holds {names}: not in the task's metric_list" in markdown
