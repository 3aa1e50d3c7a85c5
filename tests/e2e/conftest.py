"""The evaluations that more than one end-to-end file reads (``tests.support.evaluations``), as fixtures: each is run
once per test run, and each file reads the runs, results, samples and report it checks from here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import evaluations
from tests.support.commands import find_results


def _read(built: dict) -> dict:
    """A built evaluation with its results and samples, report summary and markdown loaded."""
    runs = {model: Path(output) for model, output in built["runs"].items()}
    report = Path(built["report"])
    return {
        "runs": runs,
        "logs": {model: Path(log) for model, log in built.get("logs", {}).items()},
        "results": {model: find_results(output) for model, output in runs.items()},  # (results JSON, samples)
        "report": report,
        "summary": json.loads((report / "summary.json").read_text()),
        "md": (report / "report.md").read_text(),
    }


@pytest.fixture(scope="session")
def study_pair(tmp_path_factory, tiny_checkpoint, vsr_data_dir) -> dict:
    """Two of the study's models on VSR with the attention log, and the report's command line over them."""
    return _read(evaluations.study_pair(tmp_path_factory, tiny_checkpoint, vsr_data_dir))


@pytest.fixture(scope="session")
def user_path(tmp_path_factory, qwen_checkpoint, vsr_data_dir) -> dict:
    """The study's four models on VSR on the real Qwen vocabulary, and the report over them."""
    built = evaluations.user_path(tmp_path_factory, qwen_checkpoint, vsr_data_dir)
    return {**_read(built), "root": Path(built["root"])}


@pytest.fixture(scope="session")
def family_evaluation(tmp_path_factory, family_checkpoint, vsr_data_dir):
    """``family_evaluation(family)``: the family-detecting models on VSR on ``family``'s tiny checkpoint, and the
    report over them."""

    def evaluate(family: str) -> dict:
        checkpoint = lambda: family_checkpoint(family)  # noqa: E731  (built only when the runs are)
        return _read(evaluations.family_runs(tmp_path_factory, family, checkpoint, vsr_data_dir))

    return evaluate


@pytest.fixture(scope="session")
def answerer(tmp_path_factory) -> Path:
    return evaluations.answerer(tmp_path_factory)


@pytest.fixture(scope="session")
def cross(tmp_path_factory, answerer) -> dict:
    """Both runs on every colour task (``evaluations.cross_benchmark_runs``) and the report over them, built here."""
    from analysis.report import ReportSettings, build_report

    built = evaluations.cross_benchmark_runs(tmp_path_factory, answerer)
    root = tmp_path_factory.mktemp("cross")
    tasks, runs = Path(built["tasks"]), {name: Path(output) for name, output in built["runs"].items()}
    out = root / "report"
    settings = ReportSettings(bootstrap=2000, aggregated_resamples=256, include_path=[str(tasks)], examples=2)
    summary = build_report([runs[name] for name, _, _ in evaluations.CROSS_RUNS], out, settings)
    labels = {}
    for entry in summary["runs"]:
        name = next(n for n, path in runs.items() if str(path) in entry["results_files"][0])
        labels[name] = entry["label"]
    return {"root": root, "tasks": tasks, "runs": runs, "out": out, "summary": summary, "labels": labels,
            "md": (out / "report.md").read_text(), "samples": {n: find_results(p) for n, p in runs.items()}}  # fmt: skip
