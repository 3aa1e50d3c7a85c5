"""Across benchmarks: the report, the viewer and the statistics on POPE, CV-Bench 2D, MMMU val, MME and TextVQA val.

The tasks are lmms-eval's installed definitions on small local parquet data (``tests/support/local_benchmarks.py``), answered
by a tiny Qwen3-VL trained to answer them by the image's majority colour, unsure on images near half red. Two runs:
the baseline and AdaptVis smoothening every document's image attention (exaggerated settings): on every task some
documents are answered differently, so a wrong pairing or a wrong aggregation would change a number. The runs and
the report are the ``cross`` fixture (``e2e/conftest.py``), shared with ``test_report_numbers.py``, which checks that
each number of the report is the results JSON's; the statistics on hand-built examples against direct computations
are unit tests (``tests/unit/analysis/test_stats.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from scipy.stats import binomtest

from analysis.__main__ import main as analysis_main
from analysis.report import ReportSettings, build_report
from analysis.runs import LOG_SAMPLES_FIX, load_runs
from analysis.stats import holm
from analysis.viewer import FLIPPED, Viewer
from tests.support.browser import browser, free_port, reachable, wait
from tests.support.commands import lmms_eval_env
from tests.support.environment import REPO_ROOT
from tests.support.evaluations import CROSS_DOCS as DOCS
from tests.support.evaluations import CROSS_RUNS as RUNS

pytestmark = pytest.mark.slow
PRIMARY = {
    "local_cv_bench_2d": "cv_bench_acc",
    "local_mme": "mme_perception_score",
    "local_mmmu_val": "mmmu_acc",
    "local_pope": "pope_accuracy",
    "local_textvqa_val": "exact_match",
}


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(heading + "\n", 1)[1]
    table = next(block.strip() for block in section.split("\n\n") if block.strip().startswith("|"))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def _scores(task: str, samples: list[dict]) -> dict[int, float]:
    """Each document's score from what its samples line logged, by the task's definition (written here)."""
    scores = {}
    for s in samples:
        if task == "local_pope":
            scores[s["doc_id"]] = float(s["filtered_resps"].lower().strip() == s["target"].lower().strip())
        elif task == "local_cv_bench_2d":
            scores[s["doc_id"]] = float(s["cv_bench_acc"]["is_correct"])
        elif task == "local_mmmu_val":
            scores[s["doc_id"]] = float(s["mmmu_acc"]["answer"] in s["mmmu_acc"]["parsed_pred"])
        elif task == "local_mme":
            record = s.get("mme_perception_score") or s["mme_cognition_score"]
            scores[s["doc_id"]] = float(record["score"])
        else:
            scores[s["doc_id"]] = float(s["exact_match"])
    return scores


# ------------------------------------------------------------ the report on real runs
def test_the_runs_answer_differently_and_the_changed_documents_are_exact(cross):
    changed_somewhere = set()
    for task in PRIMARY:
        base = _scores(task, cross["samples"]["base"][1][task])
        for name in ("smooth",):
            mine = _scores(task, cross["samples"][name][1][task])
            listed = cross["summary"]["tasks"][task]["changed"][cross["labels"][name]]
            assert listed["worse"] == sorted(d for d in base if mine[d] < base[d]), (task, name)
            assert listed["better"] == sorted(d for d in base if mine[d] > base[d]), (task, name)
            if listed["worse"] or listed["better"]:
                changed_somewhere.add(task)
    assert changed_somewhere == set(PRIMARY)  # no task is degenerate
    # TextVQA's scores are not 0/1: its flips are by score
    assert {round(v, 4) for v in _scores("local_textvqa_val", cross["samples"]["smooth"][1]["local_textvqa_val"]).values()} - {0.0, 1.0}  # fmt: skip
    section = cross["md"].split("## Task `local_pope`", 1)[1].split("## Task", 1)[0]
    changed = cross["summary"]["tasks"]["local_pope"]["changed"][cross["labels"]["smooth"]]
    assert f"baseline right, run wrong: {len(changed['worse'])}" in section
    assert f"baseline wrong, run right: {len(changed['better'])}" in section
    for doc_id in (changed["worse"] + changed["better"])[:10]:
        with Image.open(cross["out"] / "thumbs" / f"local_pope_doc{doc_id}_0.png") as thumbnail:
            assert thumbnail.size == (64, 64)  # the task's own image (doc_to_visual), not larger than it is


def test_the_overview_row_per_task_with_holm_over_every_comparison(cross):
    summary = cross["summary"]
    rows = _table_rows(cross["md"], "## Results overview")
    assert [(row[0], row[1]) for row in rows] == sorted(PRIMARY.items())
    every = [
        (task, key, label, comparison)
        for task, entry in summary["tasks"].items()
        for key, metric in entry["metrics"].items()
        for label, comparison in metric["comparisons"].items()
    ]
    assert len(every) == 10  # the run against the baseline on every recomputed metric
    adjusted = holm([c["p_value"] for *_, c in every])
    for (*_, comparison), expected in zip(every, adjusted):
        assert comparison["holm_p"] == pytest.approx(expected, rel=1e-12)
        assert comparison["significant"] == (expected < 0.05)
    for row, overview in zip(rows, summary["overview"]):
        metric = summary["tasks"][overview["task"]]["metrics"][f"{overview['metric']},none"]
        for index, name in enumerate(("base", "smooth")):
            value = metric["runs"][cross["labels"][name]]["value"]
            assert row[2 + index].startswith(f"{value:.4f} [")
        for name in ("smooth",):
            comparison = metric["comparisons"][cross["labels"][name]]
            cell = row[4]
            assert (
                cell.startswith(f"{comparison['difference']:+.4f} [")
                and cell.endswith("*") == comparison["significant"]
            )
    # a mean of 0/1 scores is compared with McNemar, TextVQA's graded scores by sign flips, F1 and MME by permutation
    tests = {(t, k, label): c["test"] for t, k, label, c in every}
    smooth = cross["labels"]["smooth"]
    assert tests[("local_pope", "pope_accuracy,none", smooth)] == "exact McNemar"
    assert tests[("local_textvqa_val", "exact_match,none", smooth)] == "sign-flip permutation"
    assert tests[("local_pope", "pope_f1_score,none", smooth)] == "paired permutation"
    assert tests[("local_mme", "mme_perception_score,none", smooth)] == "paired permutation"
    with Image.open(cross["out"] / "forest.png") as forest:
        assert forest.format == "PNG" and forest.size[1] > 200


def test_pope_accuracy_comparison_equals_mcnemar_on_the_samples(cross):
    base = _scores("local_pope", cross["samples"]["base"][1]["local_pope"])
    smooth = _scores("local_pope", cross["samples"]["smooth"][1]["local_pope"])
    broken = sum(base[d] > smooth[d] for d in base)
    fixed = sum(base[d] < smooth[d] for d in base)
    entry = cross["summary"]["tasks"]["local_pope"]["metrics"]["pope_accuracy,none"]
    comparison = entry["comparisons"][cross["labels"]["smooth"]]
    assert (comparison["fixed"], comparison["broken"], comparison["n"]) == (fixed, broken, DOCS)
    assert comparison["p_value"] == pytest.approx(binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue)


# ------------------------------------------------------------ bad input
def _copy_run(cross, name: str, tmp_path: Path) -> Path:
    copy = tmp_path / f"{name}_copy"
    shutil.copytree(cross["runs"][name], copy)
    return copy


def test_a_run_without_log_samples_is_refused_with_the_fix(cross, tmp_path, capsys):
    copy = _copy_run(cross, "base", tmp_path)
    for samples in copy.rglob("*_samples_*.jsonl"):
        samples.unlink()
    assert analysis_main(["report", str(copy), "--out", str(tmp_path / "out")]) == 2
    assert LOG_SAMPLES_FIX in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_different_document_sets_are_paired_on_the_intersection(cross, tmp_path):
    copy = _copy_run(cross, "smooth", tmp_path)
    samples = next(copy.rglob("*_samples_local_pope.jsonl"))
    lines = samples.read_text().splitlines()
    samples.write_text("".join(line + "\n" for line in lines if json.loads(line)["doc_id"] not in (0, 1, 2, 3)))
    summary = build_report(
        [cross["runs"]["base"], copy], tmp_path / "out", ReportSettings(bootstrap=200, aggregated_resamples=50,
                                                                        include_path=[str(cross["tasks"])])
    )  # fmt: skip
    label = "qwen3vl_adaptvis"  # the only run of its model here
    comparison = summary["tasks"]["local_pope"]["metrics"]["pope_accuracy,none"]["comparisons"][label]
    assert comparison["n"] == DOCS - 4 and comparison["only_in_baseline"] == [0, 1, 2, 3]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert (
        f"{label} vs qwen3vl: compared on the {DOCS - 4} shared documents; only in the baseline: 0, 1, 2, 3" in markdown
    )
    # the copy's results JSON was computed on all the documents: the recomputed value says so
    assert re.search(rf"{re.escape(label)}: recomputed [0-9.]+ from the samples, the results JSON says", markdown)


def test_a_metric_missing_from_one_runs_samples_is_named(cross, tmp_path):
    copy = _copy_run(cross, "smooth", tmp_path)
    samples = next(copy.rglob("*_samples_local_pope.jsonl"))
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps({k: v for k, v in s.items() if k != "pope_f1_score"}) + "\n" for s in lines))
    summary = build_report(
        [cross["runs"]["base"], copy], tmp_path / "out", ReportSettings(bootstrap=200, aggregated_resamples=50,
                                                                        include_path=[str(cross["tasks"])])
    )  # fmt: skip
    label = "qwen3vl_adaptvis"
    entry = summary["tasks"]["local_pope"]["metrics"]["pope_f1_score,none"]
    assert f"{label}: its samples hold no per-document value of pope_f1_score" in entry["problems"]
    assert label not in entry["comparisons"] and entry["runs"][label]["results_json"] is not None
    assert "pope_accuracy,none" in summary["tasks"]["local_pope"]["metrics"]  # the others are still compared


# ------------------------------------------------------------ the viewer
def test_the_viewer_filters_any_task_by_flips(cross):
    runs = load_runs([cross["runs"][name] for name, _, _ in RUNS])
    viewer = Viewer(runs, {r.label: None for r in runs}, {r.label: "none" for r in runs}, cross["root"] / "cache",
                    include_path=[str(cross["tasks"])])  # fmt: skip
    base = _scores("local_textvqa_val", cross["samples"]["base"][1]["local_textvqa_val"])
    smooth = _scores("local_textvqa_val", cross["samples"]["smooth"][1]["local_textvqa_val"])
    flipped = sorted(d for d in base if smooth[d] != base[d])
    assert viewer.filtered("local_textvqa_val", FLIPPED) == flipped and flipped
    label = cross["labels"]["smooth"]
    worse = viewer.filtered("local_textvqa_val", f"worse than the baseline: {label}")
    assert worse == sorted(d for d in base if smooth[d] < base[d])
    better = viewer.filtered("local_textvqa_val", f"better than the baseline: {label}")
    assert better == sorted(d for d in base if smooth[d] > base[d])
    view = viewer.document("local_textvqa_val", flipped[0])
    rows = {row[0]: row for row in view.answers}
    assert rows[label][3] == f"{smooth[flipped[0]]:g} (exact_match)"
    assert "What colour covers most of the image?" in view.info and view.image.shape == (64, 64, 3)
    prompt, images, max_new_tokens = viewer.live_request("local_mmmu_val", 0)
    assert "<image 1>" in prompt and len(images) == 1 and max_new_tokens == 128


def test_a_pope_document_in_the_browser_with_both_runs_answers(cross, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser()
    port, home = free_port(), tmp_path / "home"
    home.mkdir()
    runs = [str(cross["runs"]["base"]), str(cross["runs"]["smooth"])]
    command = [sys.executable, "-m", "analysis", "view", *runs, "--port", str(port), "--include_path",
               str(cross["tasks"]), "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=lmms_eval_env(HOME=str(home)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base = {s["doc_id"]: s["filtered_resps"] for s in cross["samples"]["base"][1]["local_pope"]}
    smooth = {s["doc_id"]: s["filtered_resps"] for s in cross["samples"]["smooth"][1]["local_pope"]}
    base_scores = _scores("local_pope", cross["samples"]["base"][1]["local_pope"])
    smooth_scores = _scores("local_pope", cross["samples"]["smooth"][1]["local_pope"])
    flipped = [d for d in sorted(base) if base_scores[d] != smooth_scores[d]]
    try:
        wait(lambda: reachable(port), what="the server")
        driver.get(f"http://127.0.0.1:{port}/")

        def text(element_id: str) -> str:
            found = driver.find_elements(By.ID, element_id)
            return found[0].text if found else ""

        wait(lambda: text("counter").endswith(f"/ {DOCS}"), what="the first task")
        for element, value in (("task", "local_pope"), ("filter", FLIPPED)):
            box = driver.find_element(By.CSS_SELECTOR, f"#{element} input")
            box.click()
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(value)
            wait(lambda: driver.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li"), what=f"the {element} options")
            box.send_keys(Keys.ENTER)
            chosen = driver.find_element(By.CSS_SELECTOR, f"#{element} input")
            wait(lambda chosen=chosen, value=value: value in chosen.get_attribute("value"), what=f"{value} chosen")
        wait(lambda: text("counter") == f"1 / {len(flipped)}", what="the flipped POPE documents")
        wait(lambda: f"doc {flipped[0]}:" in text("info"), what="the first flipped POPE document")
        assert "Is the image mostly red?" in text("info")
        answers = wait(lambda: text("answers"), what="the answers")
        assert "qwen3vl" in answers and "qwen3vl_adaptvis" in answers
        rows = [line for line in answers.splitlines() if line.strip()]
        assert any(base[flipped[0]] in line for line in rows) and any(smooth[flipped[0]] in line for line in rows)
        driver.save_screenshot(str(tmp_path / "pope.png"))
    finally:
        driver.quit()
        server.terminate()
        server.communicate(timeout=30)
