"""A model sharded by ``device_map``: on a CPU, layers offloaded to disk (their weights stream in through accelerate's
hooks at every forward) must give the answers of the undispatched model, for every method."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.batch import GenerationSettings
from models.sharding import parse_max_memory, parse_placement
from plugin.registered import Qwen3VLAdaptVis, Qwen3VLCLVS, Qwen3VLVEA
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval
from tests.support.tolerance import assert_matches_reference, tolerance

# settings that change answers on the tiny model (each method really edits something)
METHODS = {
    Qwen3VL: {},
    Qwen3VLAdaptVis: {"confidence_threshold": 1.0, "smoothen_weight": 0.3},
    Qwen3VLCLVS: {"smoothing": 0.5, "uncertainty_threshold": 0.99},
    Qwen3VLVEA: {"layers": "[2,3]", "highlight_strength": 0.2},
}


@pytest.fixture(scope="module")
def offloaded(tmp_path_factory, tiny_checkpoint):
    """A device map of the tiny Qwen3-VL with layers 1 and 3 and ``lm_head`` on disk, the rest on the CPU."""
    folder = tmp_path_factory.mktemp("sharded")
    mapping = {"model.visual": "cpu", "model.language_model.embed_tokens": "cpu",
               "model.language_model.layers.0": "cpu", "model.language_model.layers.1": "disk",
               "model.language_model.layers.2": "cpu", "model.language_model.layers.3": "disk",
               "model.language_model.norm": "cpu", "model.language_model.rotary_emb": "cpu", "lm_head": "disk"}  # fmt: skip
    (folder / "map.json").write_text(json.dumps(mapping))
    return {"map": folder / "map.json", "offload": folder / "offload", "checkpoint": tiny_checkpoint}


def _answers(model, images):
    batch = model.engine.prepare(["Describe the picture.", "What is in it?"], [[images[0]], [images[1]]], [0, 1],
                                ["t", "t"])  # fmt: skip
    response = model.engine.respond(batch, GenerationSettings(max_new_tokens=6))
    return response.texts, response.first_token_logits


@pytest.mark.parametrize("model_class", list(METHODS), ids=lambda c: c.MODEL_NAME)
def test_an_offloaded_model_answers_as_the_undispatched_one(offloaded, model_class):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8))]  # fmt: skip
    settings = METHODS[model_class]
    plain = model_class(pretrained=str(offloaded["checkpoint"]), device="cpu", **settings)
    sharded = model_class(pretrained=str(offloaded["checkpoint"]), device_map=str(offloaded["map"]),
                          offload_folder=str(offloaded["offload"]), **settings)  # fmt: skip
    layers = sharded.model.model.language_model.layers
    assert sharded.model.hf_device_map["model.language_model.layers.1"] == "disk"
    assert layers[1].self_attn.q_proj.weight.device.type == "meta"  # not in memory between forwards
    assert layers[0].self_attn.q_proj.weight.device.type == "cpu"
    texts, logits = _answers(plain, images)
    sharded_texts, sharded_logits = _answers(sharded, images)
    assert sharded_texts == texts
    assert_matches_reference(sharded_logits, logits)
    if model_class is not Qwen3VL:  # the method changed the answer's logits: the comparison could fail
        _, baseline = _answers(Qwen3VL(pretrained=str(offloaded["checkpoint"]), device="cpu"), images)
        assert float((logits - baseline).abs().max()) > 10 * tolerance(logits)


def test_an_offloaded_model_through_lmms_eval(offloaded, vsr_data_dir, tmp_path):
    common = f"pretrained={offloaded['checkpoint']},confidence_threshold=1.0,smoothen_weight=0.3,batch_size=2"
    answers = {}
    for name, extra in (
        ("plain", ",device=cpu"),
        ("sharded", f",device_map={offloaded['map']},offload_folder={tmp_path / 'o'}"),
    ):
        output = tmp_path / name
        args = ["--model", "qwen3vl_adaptvis", "--model_args", common + extra, "--tasks", "vsr_random_dev",
                "--limit", "4", "--log_samples", "--output_path", str(output)]  # fmt: skip
        completed = run_lmms_eval(args, lmms_eval_env(vsr_data_dir))
        assert list(output.rglob("*_results.json")), completed.stderr[-3000:]
        _, samples = find_results(output)
        answers[name] = {s["doc_id"]: s["filtered_resps"] for s in samples["vsr_random_dev"]}
    assert answers["sharded"] == answers["plain"] and len(answers["plain"]) == 4


def test_placement_arguments_are_checked_by_name(tmp_path):
    assert parse_max_memory("0:70GiB; 1:70GiB;cpu:200GiB") == {0: "70GiB", 1: "70GiB", "cpu": "200GiB"}
    with pytest.raises(ValueError, match="each entry is DEVICE:SIZE"):
        parse_max_memory("0=70GiB")
    with pytest.raises(ValueError, match="max_memory places a sharded model: it needs device_map"):
        parse_placement(None, "0:1GiB", None, None, 1)
    with pytest.raises(ValueError, match="offload_folder places a sharded model"):
        parse_placement(None, None, str(tmp_path), None, 1)
    with pytest.raises(ValueError, match="device=cuda:1 and device_map=auto: choose one"):
        parse_placement("auto", None, None, "cuda:1", 1)
    with pytest.raises(ValueError, match="device_map=auto with 2 processes"):
        parse_placement("auto", None, None, None, 2)
    with pytest.raises(ValueError, match="neither a strategy"):
        parse_placement(str(tmp_path / "missing.json"), None, None, None, 1)
    placement = parse_placement("balanced", "0:10GiB;cpu:20GiB", str(tmp_path), None, 1)
    assert placement.load_kwargs() == {"device_map": "balanced", "max_memory": {0: "10GiB", "cpu": "20GiB"},
                                       "offload_folder": str(tmp_path)}  # fmt: skip
    assert parse_placement(None, None, None, "cpu", 4).load_kwargs() == {}
