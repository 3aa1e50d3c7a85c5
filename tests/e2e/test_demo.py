"""The reduced demo (``scripts/demo.py --fast``): the whole pipeline end to end, checked by its report."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from tests.support.environment import REPO_ROOT
from tests.support.inprocess import pipeline_steps_in_process, run_script_in_process

SCRIPTS = REPO_ROOT / "scripts"

METHODS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea", "qwen3vl_pai", "qwen3vl_vaf")


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    completed = run_script_in_process(SCRIPTS / "demo.py", ["--out", str(out), "--fast"], dict(os.environ), REPO_ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    return out, completed.stdout


def load_demo_module():
    spec = importlib.util.spec_from_file_location("demo", REPO_ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_fast_demo_writes_a_report_with_every_method(fast_demo):
    out, stdout = fast_demo
    report = out / "report" / "report.md"
    assert report.exists(), stdout[-3000:]
    text = report.read_text()
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    for method in METHODS:
        assert any(method in row for row in table_rows), f"{method} missing from the report's tables"
        assert any((out / "runs" / method).rglob("*_results.json")), f"no results file for {method}"
    assert "report:" in stdout
    # two fine-tuning stages, one attempt each, the second (the evaluated model) dimming a share of its rows
    for stage, steps in ((1, 2), (2, 4)):
        state = json.loads((out / f"finetune_{stage}_0" / "trainer_state.json").read_text())
        assert state["global_step"] == steps and state["reached_accuracy_at"] is None
    assert f"--live {out / 'finetune_2_0' / 'checkpoint-4'}" in stdout
    assert json.loads((out / "tiny" / "tiny_recipe.json").read_text())["vision_position_std"] == 2.0


def test_a_stage_that_misses_its_target_starts_afresh_from_another_seed(fast_demo, tmp_path):
    out, _ = fast_demo
    demo = load_demo_module()
    # a learning rate that cannot move the model in 2 steps, and a target only a perfect model reaches
    stage = demo.Stage("foothold", "data_foothold", 1.0, 2, 1e-9, "linear", 1.0, 1, 2, 0.0, True)
    with pipeline_steps_in_process(SCRIPTS):
        checkpoint, notes = demo.run_stage(tmp_path, 1, stage, out / "data_foothold", out / "tiny", demo.FAST, seed=7)
    assert checkpoint == tmp_path / "finetune_1_1" / "checkpoint-2"
    assert json.loads((tmp_path / "tiny_1" / "tiny_recipe.json").read_text())["seed"] == 1007
    for attempt in (0, 1):
        state = json.loads((tmp_path / f"finetune_1_{attempt}" / "trainer_state.json").read_text())
        assert state["reached_accuracy_at"] is None and state["data_settings"]["seed"] == 7 + 1000 * attempt
    assert len(notes) == 1 and notes == ["stage 1 (foothold): no attempt reached 1 (the last: 0.000)"]


def test_the_demo_prints_the_measured_range_and_warns_below_it():
    demo = load_demo_module()
    low, high = demo.EXPECTED["qwen3vl"]
    good = demo.accuracy_lines({"qwen3vl": high, "qwen3vl_vea": 0.95}, 0.5, seed=0, measured=True)
    assert (
        good[0]
        == f"  qwen3vl            {high:.3f}  ({100 * (high - 0.5):+.1f} points over majority)  expected {low:.3f}-{high:.3f}"
    )
    assert len(good) == 2 and not any("WARNING" in line for line in good)
    bad = demo.accuracy_lines({"qwen3vl": low - 0.01}, 0.5, seed=0, measured=True)
    assert bad[-1].startswith(f"WARNING: qwen3vl reached {low - 0.01:.3f}, below the {low:.3f}")
    assert "please report it" in bad[-1]
    assert "seed 9 is not one of those measured" in demo.accuracy_lines({"qwen3vl": 0.5}, 0.5, 9, measured=True)[-1]
    fast = demo.accuracy_lines({"qwen3vl": 0.5}, 0.5, seed=0, measured=False)  # --fast or overrides: no range
    assert fast == ["  qwen3vl            0.500  (+0.0 points over majority)"]


def test_a_rerun_after_an_interruption_keeps_what_was_finished(fast_demo):
    """What a kill during the last evaluation leaves behind: its step started and did not finish, no results, half
    its answers kept. Rerun, the demo keeps the data, the checkpoints and the finished evaluations, and the killed one
    computes only its missing answers; the attention log ends with one record per document. (Kept last in this file:
    it rewrites the fixture's folder.)"""
    out, _ = fast_demo
    last = METHODS[-1]
    (out / "runs" / ".pipeline" / f"{last}.done.json").unlink()
    for results in (out / "runs" / last).rglob("*_results.json"):
        results.unlink()
    [answers] = (out / "answers").glob(f"{last}-*/answers.rank0.jsonl")
    lines = answers.read_text().splitlines()
    answers.write_text("".join(line + "\n" for line in lines[: len(lines) // 2]))
    checkpoint = out / "finetune_2_0" / "checkpoint-4" / "model.safetensors"
    trained_at = checkpoint.stat().st_mtime_ns
    completed = run_script_in_process(SCRIPTS / "demo.py", ["--out", str(out), "--fast"], dict(os.environ), REPO_ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    kept = [line for line in completed.stdout.splitlines() if "finished by an earlier run" in line]
    assert len(kept) == 2 + 1 + 2 + len(METHODS) - 1, "\n".join(kept)  # two data sets, tiny, two stages, the runs
    assert f"4/5 evaluate {last} ({len(METHODS)}/{len(METHODS)}) ..." in completed.stdout
    assert checkpoint.stat().st_mtime_ns == trained_at  # not trained again
    assert len(answers.read_text().splitlines()) == len(lines)  # only the missing half was computed
    assert any((out / "runs" / last).rglob("*_results.json"))
    records = [json.loads(line) for line in (out / "attention" / last / "records.rank0.jsonl").read_text().splitlines()]
    assert sorted(record["doc_id"] for record in records) == list(range(len(lines)))
