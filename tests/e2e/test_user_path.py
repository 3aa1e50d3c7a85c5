"""The user's path on the tiny checkpoint with the real Qwen vocabulary, chat template and preprocessor.

Everything a user runs on ``Qwen/Qwen3-VL-2B-Instruct`` (or a fine-tune of it), here on ``qwen_checkpoint``:
the four models through the lmms-eval CLI on VSR rows with the attention log (VEA profiling its layers on
first use), ``analysis report`` over the four runs, ``python -m finetune``, and neutral settings that
reproduce ``qwen3vl`` for every method.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.attention_log import read_records
from models.batch import GenerationSettings
from models.registered import Qwen3VLAdaptVis, Qwen3VLCLVS, Qwen3VLVEA
from models.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval, run_module, train
from tests.support.data import colour_vsr_set
from tests.support.reference import CONTEXTS, sample_images
from tests.support.scoring import vsr_accuracy_from_samples
from tests.support.tolerance import FLOAT16_STORED, assert_matches_reference
from vsr_tasks.synthetic import generate

pytestmark = pytest.mark.slow
TASK = "vsr_random_dev"
LIMIT = 4
MODELS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, qwen_checkpoint, vsr_data_dir):
    root = tmp_path_factory.mktemp("user_path")
    boxes = root / "synthetic"  # VSR-layout rows with COCO boxes: what VEA profiles its layers on
    generate(boxes, 8, 2, 0, seed=4, image_size=96)
    runs = {}
    for model in MODELS:
        output, log = root / f"out_{model}", root / f"attn_{model}"
        args = f"pretrained={qwen_checkpoint},attention_log={log},batch_size=2"
        if model == "qwen3vl_vea":  # layers profiled on first use, on the synthetic train rows and their boxes
            args += f",coco_annotations_dir={boxes / 'annotations'},vsr_data_dir={boxes},profile_samples=4"
            args += f",profile_cache={root / 'vea_cache'}"
        completed = run_lmms_eval(
            ["--model", model, "--model_args", args, "--tasks", TASK, "--limit", str(LIMIT), "--log_samples"]
            + ["--output_path", str(output)],
            lmms_eval_env(vsr_data_dir),
        )
        results_files = list(output.rglob("*_results.json"))
        assert results_files, f"{model}: no results ({completed.stderr[-3000:]})"
        runs[model] = (output, log, find_results(output))
    report = root / "report"
    completed = run_module(
        "analysis", ["report", *(str(runs[m][0]) for m in MODELS), "--out", str(report)], lmms_eval_env(vsr_data_dir)
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root, runs, report


def test_four_models_answer_through_the_cli_with_the_attention_log(evaluated):
    _, runs, _ = evaluated
    for model, (_, log, (results, samples)) in runs.items():
        metrics = results["results"][TASK]
        assert metrics["accuracy,none"] == vsr_accuracy_from_samples(samples[TASK])
        assert len(samples[TASK]) == LIMIT
        records = read_records(log)
        assert sorted(record["doc_id"] for record in records) == list(range(LIMIT))
        for record in records:
            assert record["model"] == model and record["num_layers"] == 4
            grid_h, grid_w = record["image_grids"][0]
            assert grid_h * grid_w * 32 * 32 >= 65536  # the released minimum pixel budget applies
            # the maps hold the head-mean last row on the image's tokens: per layer they sum to the image mass, and
            # image and text mass sum to 1 (the row is a distribution)
            with np.load(log / record["maps_file"]) as maps:
                after = maps["after_0"].astype(np.float64)
            assert after.shape == (4, grid_h, grid_w) and len(record["image_mass"]) == 4
            assert_matches_reference(after.sum(axis=(1, 2)), record["image_mass"], FLOAT16_STORED)
            assert_matches_reference(np.add(record["image_mass"], record["text_mass"]), np.ones(4))


def test_vea_profiled_its_layers_on_the_train_boxes(evaluated):
    root, runs, _ = evaluated
    cached = list((root / "vea_cache").glob("vea_layers.*.json"))
    assert len(cached) == 1
    profile = json.loads(cached[0].read_text())
    assert profile["split"] == "train" and profile["samples_used"] == 4
    assert profile["layers"] == [profile["layers"][0]] and 0 <= profile["layers"][0] < 4  # top 10% of 4 -> 1
    decisions = {record["decision"]["layers"][0] for record in read_records(runs["qwen3vl_vea"][1])}
    assert decisions == set(profile["layers"])


def test_report_over_the_four_runs(evaluated):
    _, runs, report = evaluated
    summary = json.loads((report / "summary.json").read_text())
    table = summary["tasks"][TASK]["metrics"]["accuracy,none"]["runs"]
    for model in MODELS:
        assert table[model]["value"] == runs[model][2][0]["results"][TASK]["accuracy,none"]
        assert table[model]["n"] == LIMIT
    assert any(name.startswith("layers_") for name in (p.name for p in report.glob("*.png")))


def test_finetune_runs_and_saves_a_loadable_checkpoint(tmp_path, qwen_checkpoint):
    data = colour_vsr_set(tmp_path / "data", n_train=8, n_eval=2)
    train(data, qwen_checkpoint, tmp_path / "out", "--max_steps", "2", "--per_device_batch_size", "2")
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    losses = [entry["train_loss"] for entry in log if "train_loss" in entry]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)  # finite answer-token losses
    reloaded = Qwen3VL(pretrained=str(tmp_path / "out" / "checkpoint-2"), device="cpu")
    assert reloaded.tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    assert (
        reloaded.engine.processor.chat_template
        == Qwen3VL(pretrained=str(qwen_checkpoint), device="cpu").engine.processor.chat_template
    )


def _batch(wrapper):
    one, two = sample_images()
    visuals = [[one], [two, one], []]
    return wrapper.engine.prepare([CONTEXTS[0], CONTEXTS[1], CONTEXTS[1]], visuals, [0, 1, 2], ["unit"] * 3)


@pytest.mark.parametrize(
    "klass, arguments",
    [
        (Qwen3VLAdaptVis, {"sharpen_weight": 1, "smoothen_weight": 1}),
        (Qwen3VLCLVS, {"smoothing": 1, "position_unbiased": False}),
        (Qwen3VLVEA, {"highlight_strength": 1, "layers": "[1,2]"}),
    ],
    ids=["adaptvis", "clvs", "vea"],
)
def test_neutral_settings_reproduce_qwen3vl_exactly(qwen_checkpoint, klass, arguments):
    baseline = Qwen3VL(pretrained=str(qwen_checkpoint), device="cpu", batch_size=3)
    method = klass(pretrained=str(qwen_checkpoint), device="cpu", batch_size=3, **arguments)
    settings = GenerationSettings(max_new_tokens=5)
    expected = baseline.engine.respond(_batch(baseline), settings)
    got = method.engine.respond(_batch(method), settings)
    assert got.texts == expected.texts
    assert torch.equal(got.first_token_logits, expected.first_token_logits)
