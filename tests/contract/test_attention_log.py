"""The attention log (docs/ATTENTION_LOG.md): values equal an eager reference; written by every model via the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lmms_eval.api.instance import Instance

from models.attention_log import read_records
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from plugin.registered import VLMBaseline as VLM
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval, run_lmms_eval_cli
from tests.support.environment import FAMILY_TYPES
from tests.support.reference import CONTEXTS, fold_by_loops, llava_next_region, load_reference_model, sample_images
from tests.support.tolerance import FLOAT16_STORED, assert_matches_reference, tolerance

RECORD_KEYS = {
    "task",
    "doc_id",
    "model",
    "model_args",
    "num_layers",
    "image_grids",
    "image_regions",
    "image_sizes",
    "image_mass",
    "text_mass",
    "image_mass_before",
    "text_mass_before",
    "decision",
    "answer",
    "generated_tokens",
    "maps_file",
}


def _requests(docs: list[dict]) -> list[Instance]:
    gen_kwargs = {"max_new_tokens": 4, "temperature": 0, "until": ["<never>"]}
    return [
        Instance(
            request_type="generate_until",
            arguments=(doc["context"], gen_kwargs, lambda d: d["images"], index, "logtest", "test"),
            idx=0,
            metadata={"task": "logtest", "doc_id": index, "repeats": 1},
        )
        for index, doc in enumerate(docs)
    ]


def test_log_is_off_by_default_and_costs_nothing(tiny_checkpoint):
    model = Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu")
    assert model.engine.attention_log is None
    assert model.model.config.text_config._attn_implementation == "sdpa"


def _expected_region(family: str, width: int, height: int) -> list[float]:
    """Qwen's and Gemma-3's processors resize the whole image; LLaVA-1.5's keeps the centre square of side
    min(width, height); LLaVA-NeXT's kept high-resolution tokens cover the whole image to within the unpadding."""
    if family == "llava_next":
        from testbed.tiny_llava import PATCH
        from testbed.tiny_llava_next import PINPOINTS, TILE

        return llava_next_region(width, height, TILE, PATCH, PINPOINTS)
    if family != "llava":
        return [0.0, 0.0, float(width), float(height)]
    side = min(width, height)
    return [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2]


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_baseline_log_equals_eager_reference(family_checkpoint, tmp_path, family):
    checkpoint = family_checkpoint(family)
    one, two = sample_images()
    docs = [
        {"context": CONTEXTS[0], "images": [one]},
        {"context": CONTEXTS[1], "images": [two, one]},  # two images: two maps
        {"context": CONTEXTS[1], "images": []},  # no image: no maps
    ]
    model = VLM(pretrained=str(checkpoint), device="cpu", batch_size=2, attention_log=str(tmp_path))
    model.task_dict = {"logtest": {"test": docs}}
    answers = model.generate_until(_requests(docs))

    records = {record["doc_id"]: record for record in read_records(tmp_path)}
    assert sorted(records) == [0, 1, 2] and len(list(tmp_path.glob("records.rank0.jsonl"))) == 1
    reference, eager = load_reference_model(checkpoint)
    for doc_id, doc in enumerate(docs):
        record = records[doc_id]
        assert set(record) == RECORD_KEYS
        assert (record["task"], record["model"], record["num_layers"]) == ("logtest", "vlm_baseline", 4)
        regions = [_expected_region(family, *image.size) for image in doc["images"]]
        assert record["image_regions"] == [pytest.approx(region, abs=0.01) for region in regions]
        assert record["image_sizes"] == [list(image.size) for image in doc["images"]]
        assert record["decision"] == {} and record["model_args"] == {}
        assert record["image_mass_before"] is None and record["text_mass_before"] is None
        assert record["answer"] == answers[doc_id]
        total = np.array(record["image_mass"]) + np.array(record["text_mass"])
        assert_matches_reference(total, np.ones(4))

        single = model.engine.prepare([doc["context"]], [doc["images"]], [doc_id], ["logtest"])
        with torch.no_grad():
            reference(**single.inputs)
        keys = single.image_token_mask[0]
        head_mean = torch.stack([eager.captured[layer].mean(dim=1)[0] for layer in range(4)])  # [L, N]
        assert_matches_reference(record["image_mass"], head_mean[:, keys].sum(-1))
        assert record["image_grids"] == [list(grid) for grid in single.image_grids[0]]
        if not doc["images"]:
            assert record["maps_file"] is None and record["image_mass"] == [0.0] * 4
            continue
        assert record["maps_file"] == f"maps/logtest/{doc_id}.npz"
        with np.load(tmp_path / record["maps_file"]) as maps:
            assert sorted(maps.files) == [f"after_{k}" for k in range(len(doc["images"]))]
            start = 0
            image_attention = head_mean[:, keys]
            for k, ((h, w), image) in enumerate(zip(record["image_grids"], single.image_tokens[0])):
                assert maps[f"after_{k}"].dtype == np.float16 and maps[f"after_{k}"].shape == (4, h, w)
                expected = fold_by_loops(image_attention[:, start : start + image.tokens], image).numpy()
                assert_matches_reference(maps[f"after_{k}"].astype(np.float32), expected, FLOAT16_STORED)
                start += image.tokens


def _cli_run(tmp_path, checkpoint, data_dir, model: str, *model_args: str, subprocess: bool = False):
    """One lmms-eval run with the log; ``subprocess``: through the ``lmms-eval`` console script, as a user runs it."""
    log = tmp_path / "attention"
    arguments = ",".join([f"pretrained={checkpoint}", "batch_size=2", f"attention_log={log}", *model_args])
    completed = (run_lmms_eval_cli if subprocess else run_lmms_eval)(
        ["--model", model, "--model_args", arguments, "--tasks", "vsr_random_dev", "--limit", "8"]
        + ["--log_samples", "--output_path", str(tmp_path / "out")],
        lmms_eval_env(data_dir),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results, samples = find_results(tmp_path / "out")
    records = read_records(log)
    assert sorted(record["doc_id"] for record in records) == list(range(8))
    responses = {sample["doc_id"]: sample["filtered_resps"] for sample in samples["vsr_random_dev"]}
    for record in records:
        assert set(record) == RECORD_KEYS and record["model"] == model and record["task"] == "vsr_random_dev"
        assert record["answer"] == responses[record["doc_id"]]
        assert record["image_mass_before"] is not None and len(record["image_mass_before"]) == 4
        [(h, w)] = record["image_grids"]
        with np.load(log / record["maps_file"]) as maps:
            assert sorted(maps.files) == ["after_0", "before_0"]
            assert maps["after_0"].shape == maps["before_0"].shape == (4, h, w)
            # each stored cell is within FLOAT16_STORED of its own size, so their sum within that share of the mass
            summed = maps["after_0"].astype(np.float64).sum(axis=(1, 2))
            assert_matches_reference(summed, record["image_mass"], FLOAT16_STORED)
            summed = maps["before_0"].astype(np.float64).sum(axis=(1, 2))
            assert_matches_reference(summed, record["image_mass_before"], FLOAT16_STORED)
    json.dumps(results)
    return records


@pytest.mark.slow
def test_adaptvis_cli_writes_a_readable_log(tmp_path, tiny_checkpoint, vsr_data_dir):
    records = _cli_run(tmp_path, tiny_checkpoint, vsr_data_dir, "qwen3vl_adaptvis", "layers=[0-1,3]", subprocess=True)
    for record in records:
        decision = record["decision"]
        assert set(decision) == {"confidence", "alpha"} and 0.0 < decision["confidence"] <= 1.0
        assert decision["alpha"] == (0.2 if decision["confidence"] < 0.8 else 1.2)
        assert record["model_args"] == {
            "confidence_threshold": 0.8,
            "sharpen_weight": 1.2,
            "smoothen_weight": 0.2,
            "confidence_rule": "probability",
            "layers": "[0-1,3]",
        }
        before = record["image_mass_before"]
        assert abs(record["image_mass"][0] - before[0]) > 10 * tolerance(before[0])  # layer 0 edited
        assert abs(record["image_mass"][2] - before[2]) <= tolerance(before[2])  # layer 2 not edited


@pytest.mark.slow
def test_clvs_cli_writes_a_readable_log(tmp_path, tiny_checkpoint, vsr_data_dir):
    records = _cli_run(tmp_path, tiny_checkpoint, vsr_data_dir, "qwen3vl_clvs", "smoothing=0.6")
    for record in records:
        assert set(record["decision"]) == {"stop_layer"} and record["decision"]["stop_layer"] in (None, 3)
        assert record["model_args"]["smoothing"] == 0.6 and record["model_args"]["position_unbiased"] is True
        before = record["image_mass_before"]
        assert abs(record["image_mass"][0] - before[0]) > 10 * tolerance(before[0])
