"""``python -m sweep``: every grid point answers exactly as its own lmms-eval run; refusals; resume; processes.

The equality runs on the random tiny checkpoint on purpose: its answers are eight arbitrary bytes, so any
difference in a steered forward (a wrong row, a wrong setting, a batch mixed up) changes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest

from sweep.cli import main as sweep_main
from tests.support.commands import lmms_eval_env, run_module
from tests.support.environment import REPO_ROOT
from vsr_tasks.synthetic import generate

pytestmark = pytest.mark.slow
TASK = "vsr_random_heldout"
LIMIT = 5
METHOD_GRIDS = {
    "adaptvis": ["--grid", "confidence_threshold=0.001,0.9", "--grid", "sharpen_weight=0.5,1.5"],
    "clvs": ["--grid", "smoothing=0.3,0.8", "--grid", "uncertainty_threshold=0,0.9"],
    "vea": ["--grid", "smooth_strength=0.2,0.8", "--grid", "highlight_strength=0.3,0.6"],
    "pai": ["--grid", "alpha=0.5,1.5", "--grid", "gamma=1,1.4"],
    "vaf": ["--grid", "enh_para=1.3,1.8", "--grid", "sup_para=0.5,0.9"],
}
GRIDS = {f"{prefix}_{name}": grid for name, grid in METHOD_GRIDS.items() for prefix in ("qwen3vl", "vlm")}
FIXED = {"qwen3vl_vea": ",layers=[2,3]", "vlm_vea": ",layers=[2,3]", "vlm_vaf": ",start_layer=1,end_layer=4",
         "qwen3vl_vaf": ",start_layer=1,end_layer=4"}  # fmt: skip
# the study's names on Qwen3-VL; each family-detecting model once on another family
SWEPT = [(f"qwen3vl_{name}", "qwen3_vl") for name in METHOD_GRIDS]
SWEPT += [("vlm_adaptvis", "llava"), ("vlm_clvs", "qwen2_5_vl"), ("vlm_vea", "llava")]
SWEPT += [("vlm_clvs", "llava_next"), ("vlm_pai", "llava"), ("vlm_vaf", "qwen2_5_vl")]  # the two later methods


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A VSR folder whose held-out train rows all have images (6 of 120)."""
    folder = tmp_path_factory.mktemp("sweep") / "data"
    generate(folder, 120, 4, 2, seed=6, image_size=64)
    return folder


@pytest.fixture()
def environment(data, monkeypatch):
    for key, value in lmms_eval_env(data).items():
        monkeypatch.setenv(key, value)


def model_args(checkpoint, model: str) -> str:
    return f"pretrained={checkpoint},batch_size=2,device=cpu" + FIXED.get(model, "")


def run_sweep(checkpoint, model: str, out: Path, *extra: str, task: str = TASK) -> int:
    argv = ["--model", model, "--model_args", model_args(checkpoint, model), "--task", task, "--out", str(out)]
    return sweep_main(argv + ["--limit", str(LIMIT), "--bootstrap", "200", *GRIDS[model], *extra])


def answers_by_setting(out: Path) -> dict[str, dict[int, str]]:
    result: dict[str, dict[int, str]] = {}
    for line in (out / "answers.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "warning" in record:
            continue
        result.setdefault(json.dumps(record["setting"], sort_keys=True), {})[record["doc_id"]] = record["answer"]
    return result


def lmms_eval_answers(model: str, arguments: str) -> dict[int, str]:
    """A separate lmms-eval evaluation of the same documents with that setting's model_args (in this process)."""
    from lmms_eval.evaluator import simple_evaluate

    from local_tasks.manager import task_manager

    results = simple_evaluate(
        model=model, model_args=arguments, tasks=[TASK], limit=LIMIT, log_samples=True, task_manager=task_manager()
    )
    return {sample["doc_id"]: sample["filtered_resps"][0] for sample in results["samples"][TASK]}


@pytest.mark.parametrize("model,family", SWEPT)
def test_each_grid_point_answers_as_its_own_lmms_eval_run(
    family_checkpoint, trained_checkpoint, environment, tmp_path, model, family
):
    # The other families' random models barely react to a last-row edit, and their random bytes often all decode
    # to U+FFFD: LLaVA runs its fine-tuned checkpoint (True / False per document), Qwen2.5-VL and LLaVA-NeXT a word
    # vocabulary.
    tiny_checkpoint = {
        "qwen3_vl": lambda: family_checkpoint("qwen3_vl"),
        "qwen2_5_vl": lambda: family_checkpoint("qwen2_5_vl", "words"),
        "llava": lambda: trained_checkpoint("llava")[0],
        "llava_next": lambda: family_checkpoint("llava_next", "words"),
    }[family]()
    out = tmp_path / "out"
    assert run_sweep(tiny_checkpoint, model, out) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert len(summary["settings"]) == 5  # the 2 x 2 grid and the neutral setting
    assert sum(entry["neutral"] for entry in summary["settings"]) == 1
    by_setting = answers_by_setting(out)
    for entry in summary["settings"]:
        expected = lmms_eval_answers(model, entry["model_args"])
        assert by_setting[json.dumps(entry["setting"], sort_keys=True)] == expected, entry["model_args"]
    distinct = {json.dumps(answers, sort_keys=True) for answers in by_setting.values()}
    if family == "qwen3_vl":  # the settings really answered differently: the comparison could have failed
        assert len(distinct) > 1
    else:  # the documents did (a row given another's answer would fail it); the settings need not
        assert all(len(set(answers.values())) > 1 for answers in by_setting.values())
    best = (out / "best_model_args.txt").read_text().strip()
    assert best == summary["best"]["model_args"] and best.startswith(model_args(tiny_checkpoint, model))


def test_outputs_hold_intervals_paired_tests_and_a_heatmap(tiny_checkpoint, environment, tmp_path):
    out = tmp_path / "out"
    assert run_sweep(tiny_checkpoint, "qwen3vl_clvs", out) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["metric"] == "accuracy" and summary["n"] == LIMIT and summary["task"] == TASK
    scores: dict[str, dict[int, float]] = {}
    for line in (out / "answers.jsonl").read_text().splitlines():
        record = json.loads(line)
        scores.setdefault(json.dumps(record["setting"], sort_keys=True), {})[record["doc_id"]] = record["score"]
    neutral = next(scores[json.dumps(e["setting"], sort_keys=True)] for e in summary["settings"] if e["neutral"])
    for entry in summary["settings"]:
        low, high = entry["ci95"]
        assert low <= entry["metric"] <= high
        mine = scores[json.dumps(entry["setting"], sort_keys=True)]
        assert sorted(mine) == sorted(neutral) and len(mine) == LIMIT
        assert entry["metric"] == pytest.approx(sum(mine.values()) / LIMIT, abs=1e-12)
        if not entry["neutral"]:  # the paired test, recomputed from the answers: exact binomial on the discordant
            paired = entry["vs_neutral"]
            fixed = sum(mine[d] > neutral[d] for d in mine)
            broken = sum(mine[d] < neutral[d] for d in mine)
            assert (paired["fixed"], paired["broken"]) == (fixed, broken)
            expected_p = binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue if fixed + broken else 1.0
            assert paired["p_value"] == pytest.approx(expected_p, abs=1e-12) and paired["test"] == "exact McNemar"
    table = (out / "sweep.md").read_text().splitlines()
    metric_column = [float(line.split("|")[4]) for line in table if line.startswith("| 0.")]
    assert metric_column == sorted(metric_column, reverse=True)
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 5 * LIMIT and set(json.loads(lines[0])) == {"doc_id", "setting", "answer", "score"}


def test_dev_and_test_are_refused_unless_allowed(tiny_checkpoint, environment, tmp_path, capsys):
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", tmp_path / "a", task="vsr_random_dev") == 2
    message = capsys.readouterr().err
    assert "vsr_random_dev evaluates on its 'dev' split" in message and "vsr_random_heldout" in message
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", out, "--allow_eval_split", task="vsr_random_dev") == 0
    for name in ("sweep.md", "best_model_args.txt", "answers.jsonl"):
        assert "tuned on an evaluation split" in (out / name).read_text().splitlines()[0], name
    assert list(json.loads((out / "sweep.json").read_text()))[0] == "warning"


def test_an_interrupted_sweep_continues_where_it_stopped(tiny_checkpoint, environment, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", whole) == 0
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", resumed, "--max_batches", "1") == 0
    assert not (resumed / "sweep.json").exists()
    first = len((resumed / "raw_answers.rank0.jsonl").read_text().splitlines())
    assert first == 5 * 2  # one batch of 2 documents, 5 settings
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", resumed) == 0
    assert len((resumed / "raw_answers.rank0.jsonl").read_text().splitlines()) == 5 * LIMIT  # nothing answered twice
    assert answers_by_setting(resumed) == answers_by_setting(whole)


def test_a_changed_grid_or_model_is_refused_by_name(tiny_checkpoint, environment, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_sweep(tiny_checkpoint, "qwen3vl_adaptvis", out, "--max_batches", "1") == 0
    argv = ["--model", "qwen3vl_adaptvis", "--model_args", model_args(tiny_checkpoint, "qwen3vl_adaptvis")]
    argv += ["--task", TASK, "--out", str(out), "--limit", str(LIMIT), "--grid", "sharpen_weight=1.5"]
    assert sweep_main(argv) == 2
    assert "holds a different sweep (grid: was" in capsys.readouterr().err


def test_two_processes_share_the_batches_and_rank_0_merges(tiny_checkpoint, data, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    env = lmms_eval_env(data, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    common = [
        "-m",
        "sweep",
        "--model",
        "qwen3vl_adaptvis",
        "--model_args",
        model_args(tiny_checkpoint, "qwen3vl_adaptvis"),
    ]
    common += ["--task", TASK, "--limit", str(LIMIT), "--bootstrap", "200", *GRIDS["qwen3vl_adaptvis"]]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    completed = subprocess.run([*launcher, *common, "--out", str(double)], cwd=REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=600)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert sorted(path.name for path in double.glob("raw_answers.rank*.jsonl")) == [
        "raw_answers.rank0.jsonl",
        "raw_answers.rank1.jsonl",
    ]
    for rank in (0, 1):  # each process answered its share: 3 batches of 2, 2 and 1 documents
        assert len((double / f"raw_answers.rank{rank}.jsonl").read_text().splitlines()) in (5 * 2, 5 * 3)
    completed = run_module("sweep", [*common[2:], "--out", str(single)], {**env, "WORLD_SIZE": "1"})
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert answers_by_setting(double) == answers_by_setting(single)
