"""``python -m sweep``'s refusals and bookkeeping, before any model is loaded: a malformed grid, arguments a sweep
cannot honour, a changed sweep in the same folder, the settings' order, their ``--model_args`` and a torn answer file.
"""

from __future__ import annotations

import json

import pytest

from sweep.cli import STATE_FILE, _check_state, _setting_model_args, main
from sweep.engine import read_raw_answers
from sweep.points import PointsError, settings

TASK = "vsr_random_heldout"


@pytest.mark.parametrize(
    "grid, message",
    [
        (["--grid", "sharpness=1.2"], "unknown parameter 'sharpness' for qwen3vl_adaptvis"),
        (["--grid", "sharpen_weight=1.2,big"], "--grid sharpen_weight: 'big' is not a number"),
        (["--grid", "sharpen_weight="], "--grid sharpen_weight=: no values"),
        (["--grid", "confidence_threshold=0.5"], "confidence_threshold is both in --model_args and --grid"),
        (["--grid", "sharpen_weight=-1"], "sharpen_weight and smoothen_weight must be >= 0"),
        (["--grid", "sharpen_weight=1.2", "--grid", "sharpen_weight=1.5"], "parameter 'sharpen_weight' is given twice"),
        ([], "give at least one --grid"),
    ],
)
def test_a_malformed_grid_is_refused_naming_it(tmp_path, capsys, grid, message):
    argv = ["--model", "qwen3vl_adaptvis", "--model_args", "pretrained=/nowhere,confidence_threshold=0.8"]
    assert main([*argv, "--task", TASK, "--out", str(tmp_path / "out"), *grid]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argument, why",
    [("attention_log=/tmp/log", "it records one setting"), ("answer_cache=/tmp/a", "keeps its own answers in --out")],
)
def test_arguments_a_sweep_cannot_honour_are_refused_saying_why(tmp_path, capsys, argument, why):
    argv = ["--model", "qwen3vl_clvs", "--model_args", f"pretrained=/nowhere,{argument}", "--task", TASK]
    assert main([*argv, "--grid", "smoothing=0.5", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"--model_args {argument.split('=')[0]}: not supported in a sweep" in error and why in error


def test_a_baseline_has_nothing_to_sweep(tmp_path, capsys):
    argv = ["--model", "qwen3vl", "--task", TASK, "--grid", "smoothing=0.5", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--model qwen3vl has no parameters to sweep; choose one of qwen3vl_adaptvis" in capsys.readouterr().err


def test_settings_vary_the_last_parameter_fastest():
    grid = {"smoothing": [0.3, 0.8], "uncertainty_threshold": [0.0, 0.5, 0.9]}
    assert settings(grid) == [
        {"smoothing": 0.3, "uncertainty_threshold": 0.0},
        {"smoothing": 0.3, "uncertainty_threshold": 0.5},
        {"smoothing": 0.3, "uncertainty_threshold": 0.9},
        {"smoothing": 0.8, "uncertainty_threshold": 0.0},
        {"smoothing": 0.8, "uncertainty_threshold": 0.5},
        {"smoothing": 0.8, "uncertainty_threshold": 0.9},
    ]


def test_a_settings_model_args_paste_after_the_fixed_ones():
    setting = {"smoothing": 0.5, "window_memory_size": 1.0, "position_unbiased": False}
    assert _setting_model_args("pretrained=P,batch_size=2", setting) == (
        "pretrained=P,batch_size=2,smoothing=0.5,window_memory_size=1,position_unbiased=false"
    )
    assert _setting_model_args("", {"smoothing": 0.25}) == "smoothing=0.25"


def test_a_changed_sweep_in_the_same_folder_is_refused_naming_what_changed(tmp_path):
    state = {"model": "qwen3vl_clvs", "task": TASK, "grid": {"smoothing": [0.5]}}
    _check_state(tmp_path / "out", state)
    assert json.loads((tmp_path / "out" / STATE_FILE).read_text()) == state
    _check_state(tmp_path / "out", state)  # the same sweep continues
    with pytest.raises(PointsError, match=r"grid: was \{'smoothing': \[0.5\]\}, now \{'smoothing': \[0.7\]\}"):
        _check_state(tmp_path / "out", {**state, "grid": {"smoothing": [0.7]}})


def test_a_torn_last_line_is_answered_again(tmp_path):
    lines = [json.dumps({"setting": s, "doc_id": d, "answer": f"{s}-{d}"}) for s in (0, 1) for d in (3, 4)]
    (tmp_path / "raw_answers.rank0.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])
    (tmp_path / "raw_answers.rank1.jsonl").write_text(json.dumps({"setting": 1, "doc_id": 9, "answer": "x"}) + "\n")
    assert read_raw_answers(tmp_path) == {(0, 3): "0-3", (0, 4): "0-4", (1, 3): "1-3", (1, 9): "x"}
