"""The user's path on the tiny checkpoint with the real Qwen vocabulary, chat template and preprocessor.

Everything a user runs on ``Qwen/Qwen3-VL-2B-Instruct`` (or a fine-tune of it), here on ``qwen_checkpoint``:
every model (the baseline, AdaptVis, CLVS, VEA, PAI, VAF) through the lmms-eval CLI on VSR rows with the attention
log (VEA profiling its layers on first use), ``analysis report`` over the runs and ``python -m finetune`` (neutral
settings reproducing the baseline: ``tests/contract/test_neutral.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.attention_log import read_records
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import train
from tests.support.data import colour_vsr_set
from tests.support.evaluations import USER_PATH_LIMIT as LIMIT
from tests.support.evaluations import USER_PATH_MODELS as MODELS
from tests.support.evaluations import VSR_TASK as TASK
from tests.support.scoring import vsr_accuracy_from_samples
from tests.support.tolerance import FLOAT16_STORED, assert_matches_reference

pytestmark = pytest.mark.slow


def test_every_model_answers_through_the_cli_with_the_attention_log(user_path):
    assert set(user_path["results"]) == set(MODELS)
    for model, (results, samples) in user_path["results"].items():
        metrics = results["results"][TASK]
        assert metrics["accuracy,none"] == vsr_accuracy_from_samples(samples[TASK])
        assert len(samples[TASK]) == LIMIT
        log = user_path["logs"][model]
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
    decisions = {
        model: read_records(user_path["logs"][model])[0]["decision"] for model in ("qwen3vl_pai", "qwen3vl_vaf")
    }
    assert decisions["qwen3vl_pai"] == {"alpha": 0.2, "gamma": 1.1, "layers": [2, 4], "edit_first_token": True}
    assert {key: decisions["qwen3vl_vaf"][key] for key in ("enh_para", "sup_para", "layers")} == {
        "enh_para": 1.15, "sup_para": 0.95, "layers": [1, 4]}  # fmt: skip


def test_vea_profiled_its_layers_on_the_train_boxes(user_path):
    cached = list((user_path["root"] / "vea_cache").glob("vea_layers.*.json"))
    assert len(cached) == 1
    profile = json.loads(cached[0].read_text())
    assert profile["split"] == "train" and profile["samples_used"] == 4
    assert profile["layers"] == [profile["layers"][0]] and 0 <= profile["layers"][0] < 4  # top 10% of 4 -> 1
    decisions = {record["decision"]["layers"][0] for record in read_records(user_path["logs"]["qwen3vl_vea"])}
    assert decisions == set(profile["layers"])


def test_the_report_over_the_runs_compares_each_method_and_plots_its_layers(user_path):
    """(That each number is the results JSON's: ``test_report_numbers.py``, on these runs.)"""
    comparisons = user_path["summary"]["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"]
    assert set(comparisons) == set(MODELS[1:]) and all(c["n"] == LIMIT for c in comparisons.values())
    assert any(name.startswith("layers_") for name in (p.name for p in user_path["report"].glob("*.png")))


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
