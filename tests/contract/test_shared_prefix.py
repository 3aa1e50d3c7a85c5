"""One shared prefix (positions 0..N-2) for AdaptVis, CLVS and the attention log, against the whole-prompt paths.

The reference for every method is the path it replaced, kept as the models' fallback: AdaptVis' two
whole-prompt passes (``respond_two_pass``) and CLVS' one whole-prompt pass (``respond_whole_prompt``). On a fine-tuned
8-layer checkpoint of each family with a different prompt layout (Qwen3-VL: M-RoPE; LLaVA-1.5: 1-D RoPE, a centre
crop; LLaVA-NeXT: anyres tiles and newlines), AdaptVis takes both branches within one batch and CLVS stops
mid-stack, so the decisions themselves are exercised, and both are also checked against the eager reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loguru import logger

from interventions import prefix as prefix_module
from interventions.prefix import PrefixUnsupported, compute_prefix, next_token_logits
from models.attention_log import read_records
from models.batch import GenerationSettings
from plugin.registered import VLMCLVS as CLVSModel
from plugin.registered import VLMAdaptVis as AdaptVisModel
from plugin.registered import VLMBaseline as VLM
from tests.support.batches import batch_of, documents
from tests.support.reference import (
    LENS_TOP_K,
    adaptvis_row_fn,
    clvs_reference_logits,
    eager_logits,
    image_positions,
    lens_entropy,
    lens_logits,
    load_reference_model,
)
from tests.support.tolerance import FLOAT16_STORED, assert_matches_reference, entropy_tolerance, tolerance

SETTINGS = GenerationSettings(max_new_tokens=4)


def assert_same_answers(new, old) -> None:
    assert new.texts == old.texts
    assert_matches_reference(new.first_token_logits, old.first_token_logits)
    for got, expected in zip(new.extras, old.extras):
        assert same_decision(got.get("decision", {}), expected.get("decision", {}))


def same_decision(got: dict, expected: dict) -> bool:
    """Equal keys, equal alphas / stop layers, confidences equal within the float32 tolerance of their size."""
    return got.keys() == expected.keys() and all(
        abs(got[key] - expected[key]) <= tolerance(expected[key])
        if isinstance(got[key], float)
        else got[key] == expected[key]
        for key in got
    )


TRAINED_FAMILIES = ("qwen3_vl", "llava", "llava_next")


@pytest.fixture(scope="module", params=TRAINED_FAMILIES)
def trained_model(request, trained_checkpoint):
    return trained_checkpoint(request.param)


@pytest.fixture(scope="module")
def checkpoint(trained_model):
    return str(trained_model[0])


@pytest.fixture(scope="module")
def docs(trained_model):
    return documents(trained_model[1])


def test_prefix_logits_equal_the_whole_prompt_forward(checkpoint, docs):
    baseline = VLM(pretrained=checkpoint, device="cpu", batch_size=4)
    batch = batch_of(baseline, docs)
    prefix = compute_prefix(baseline.model, batch.inputs, baseline.engine.family)
    assert prefix.cache.get_seq_length() == batch.inputs["input_ids"].shape[1] - 1
    expected = baseline.engine.prefill_logits(batch)
    for _ in range(2):  # the cache is rewound: a second pass on the same prefix gives the same logits
        assert_matches_reference(next_token_logits(baseline.model, prefix), expected)
        assert prefix.cache.get_seq_length() == batch.inputs["input_ids"].shape[1] - 1
    plain = baseline.engine.respond(batch, SETTINGS)
    continued = baseline.engine.generate(batch, SETTINGS, prefix=prefix)
    assert continued.texts == plain.texts
    assert_matches_reference(continued.first_token_logits, plain.first_token_logits)


def between_confidences(checkpoint, docs) -> float:
    """A threshold between the sure and the unsure image prompts' first-token confidences (the fine-tuned model's,
    which depend on the CPU kernels it was trained with), each farther from it than the tolerance."""
    baseline = VLM(pretrained=checkpoint, device="cpu", batch_size=4)
    batch = batch_of(baseline, docs)
    confidence = torch.softmax(baseline.engine.prefill_logits(batch), dim=-1).max(dim=-1).values
    with_images = sorted(float(c) for c, ids in zip(confidence, image_positions(batch)) if ids)
    gap, low = max((high - low, low) for low, high in zip(with_images, with_images[1:]))
    assert gap > 20 * tolerance(with_images), with_images  # the prompts are told apart, whatever the kernels
    return low + gap / 2


@pytest.mark.parametrize("threshold", ["between", 0.0, 1.01])
@pytest.mark.parametrize("size", [4, 1])
def test_adaptvis_one_prefix_equals_two_passes(checkpoint, docs, threshold, size):
    threshold = between_confidences(checkpoint, docs) if threshold == "between" else threshold
    wrapper = AdaptVisModel(pretrained=checkpoint, device="cpu", batch_size=4, confidence_threshold=threshold)
    batch = batch_of(wrapper, docs[:size])
    new = wrapper.engine.respond(batch, SETTINGS)
    old = wrapper.engine.answer_whole_prompt(batch, SETTINGS)
    assert_same_answers(new, old)
    alphas = [extra["decision"]["alpha"] for extra in new.extras]
    if threshold not in (0.0, 1.01) and size == 4:  # the fine-tuned checkpoint: both branches in one batch of images
        with_images = [alpha for alpha, (_, images) in zip(alphas, docs) if images]
        assert set(with_images) == {0.2, 1.2}
    elif threshold in (0.0, 1.01):
        assert set(alphas) == {1.2 if threshold == 0.0 else 0.2}


def test_adaptvis_mixed_branches_equal_the_eager_reference(checkpoint, docs):
    model, eager = load_reference_model(checkpoint)
    threshold = between_confidences(checkpoint, docs)
    wrapper = AdaptVisModel(pretrained=checkpoint, device="cpu", batch_size=4, confidence_threshold=threshold)
    batch = batch_of(wrapper, docs)
    response = wrapper.engine.respond(batch, GenerationSettings(max_new_tokens=1))
    confidence = torch.softmax(eager_logits(model, eager, batch, None), dim=-1).max(dim=-1).values
    alphas = [0.2 if float(c) < threshold else 1.2 for c in confidence]
    assert alphas == [extra["decision"]["alpha"] for extra in response.extras]
    assert {alpha for alpha, ids in zip(alphas, image_positions(batch)) if ids} == {0.2, 1.2}
    row_fn = adaptvis_row_fn(alphas, set(range(8)), image_positions(batch))
    assert_matches_reference(response.first_token_logits, eager_logits(model, eager, batch, row_fn))


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("size", [4, 1])
def test_clvs_one_prefix_equals_the_whole_prompt(checkpoint, docs, unbiased, size):
    wrapper = CLVSModel(pretrained=checkpoint, device="cpu", batch_size=4, position_unbiased=unbiased)
    batch = batch_of(wrapper, docs[:size])
    new = wrapper.engine.respond(batch, SETTINGS)
    old = wrapper.engine.answer_whole_prompt(batch, SETTINGS)
    assert_same_answers(new, old)
    stops = [extra["decision"]["stop_layer"] for extra in new.extras]
    assert stops[0] == 5  # the default threshold stops the fine-tuned model mid-stack (checks after layers 5-7)


def test_clvs_mid_stack_stop_equals_the_eager_reference(checkpoint, docs):
    model, eager = load_reference_model(checkpoint)
    probe = CLVSModel(pretrained=checkpoint, device="cpu", batch_size=4)
    batch = batch_of(probe, docs)
    images = image_positions(batch)
    _, hidden = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, [None] * 4)
    with torch.no_grad():
        lens = {layer: lens_logits(model, hidden[layer]) for layer in (5, 6, 7)}
    entropies = {layer: lens_entropy(logits) for layer, logits in lens.items()}
    # a threshold between the sure and the unsure prompts: some sequences stop after layer 5, others later or never
    sure = [float(entropies[5][b]) for b in range(4) if images[b]]
    threshold = (min(sure) + max(sure)) / 2
    for layer, logits in lens.items():  # no entropy within its tolerance of the threshold: the stops are decided
        margin = (entropies[layer] - threshold).abs() - entropy_tolerance(logits, LENS_TOP_K)
        assert bool((margin[[b for b in range(4) if images[b]]] > 0).all()), (layer, threshold)
    expected = []
    for b in range(4):
        stop = next((layer for layer in (5, 6, 7) if float(entropies[layer][b]) < threshold), None)
        expected.append(stop if images[b] else None)
    assert 5 in expected and any(stop != 5 for stop, ids in zip(expected, images) if ids)
    wrapper = CLVSModel(pretrained=checkpoint, device="cpu", batch_size=4, uncertainty_threshold=threshold)
    response = wrapper.engine.respond(batch, GenerationSettings(max_new_tokens=1))
    assert [extra["decision"]["stop_layer"] for extra in response.extras] == expected
    reference, _ = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, expected)
    assert_matches_reference(response.first_token_logits, reference)
    never, _ = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, [None] * 4)
    stopped = [b for b in range(4) if expected[b] is not None and expected[b] < 7]
    # the stop changed the later layers' rows, well past the tolerance
    assert (reference[stopped] - never[stopped]).abs().max() > 10 * tolerance(reference)


@pytest.mark.parametrize("name", ["adaptvis", "clvs"])
def test_attention_log_from_the_prefix_equals_the_whole_prompt_log(checkpoint, docs, tmp_path, name):
    klass = {"adaptvis": AdaptVisModel, "clvs": CLVSModel}[name]
    new_wrapper = klass(pretrained=checkpoint, device="cpu", batch_size=4, attention_log=str(tmp_path / "new"))
    old_wrapper = klass(pretrained=checkpoint, device="cpu", batch_size=4, attention_log=str(tmp_path / "old"))
    batch = batch_of(new_wrapper, docs)
    new = new_wrapper.engine.respond(batch, SETTINGS)
    new_wrapper.engine.finish(batch, new, new.texts)
    old = (
        old_wrapper.engine.answer_whole_prompt(batch, SETTINGS)
        if name == "adaptvis"
        else old_wrapper.engine.answer_whole_prompt(batch, SETTINGS)
    )
    old_wrapper.engine.finish(batch, old, old.texts)
    new_records, old_records = read_records(tmp_path / "new"), read_records(tmp_path / "old")
    assert len(new_records) == len(old_records) == 4
    for got, expected in zip(new_records, old_records):
        assert same_decision(got["decision"], expected["decision"])
        for key in ("image_mass", "text_mass", "image_mass_before", "text_mass_before"):
            assert (got[key] is None) == (expected[key] is None)
            if got[key] is not None:
                assert_matches_reference(got[key], expected[key])
        assert got["maps_file"] == expected["maps_file"]
        if got["maps_file"]:
            new_maps = np.load(tmp_path / "new" / got["maps_file"])
            old_maps = np.load(tmp_path / "old" / expected["maps_file"])
            assert sorted(new_maps.files) == sorted(old_maps.files)
            for key in new_maps.files:
                assert_matches_reference(new_maps[key], old_maps[key], FLOAT16_STORED)  # float16 maps


def test_sampling_continues_from_the_steered_distribution(checkpoint, docs):
    wrapper = AdaptVisModel(pretrained=checkpoint, device="cpu", batch_size=4)
    batch = batch_of(wrapper, docs)
    settings = GenerationSettings(max_new_tokens=6, temperature=1.5)
    torch.manual_seed(7)
    new = wrapper.engine.respond(batch, settings)
    torch.manual_seed(7)
    old = wrapper.engine.answer_whole_prompt(batch, settings)
    assert_same_answers(new, old)


def test_a_cache_that_cannot_be_cropped_falls_back_to_whole_prompt_passes(checkpoint, docs, monkeypatch):
    def refuse(cache):
        raise PrefixUnsupported("the model's cache is a TestCache, which cannot be cropped back")

    monkeypatch.setattr(prefix_module, "_check_cache", refuse)
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        adaptvis = AdaptVisModel(pretrained=checkpoint, device="cpu", batch_size=4)
        batch = batch_of(adaptvis, docs)
        assert_same_answers(
            adaptvis.engine.respond(batch, SETTINGS), adaptvis.engine.answer_whole_prompt(batch, SETTINGS)
        )
        adaptvis.engine.respond(batch, SETTINGS)
        clvs = CLVSModel(pretrained=checkpoint, device="cpu", batch_size=4)
        assert_same_answers(clvs.engine.respond(batch, SETTINGS), clvs.engine.answer_whole_prompt(batch, SETTINGS))
    finally:
        logger.remove(sink)
    warnings = [m for m in messages if "whole-prompt passes instead of a shared prefix" in m]
    assert len(warnings) == 2  # one line per model, naming the cause, not one per batch
    assert all("TestCache" in m and len(m.strip().splitlines()) == 1 for m in warnings)


def test_beam_search_is_refused_before_any_work(checkpoint):
    for klass in (AdaptVisModel, CLVSModel):
        wrapper = klass(pretrained=checkpoint, device="cpu")
        with pytest.raises(ValueError, match="num_beams > 1, is not supported under steering or the attention log"):
            wrapper.engine.check(GenerationSettings(num_beams=2))
    VLM(pretrained=checkpoint, device="cpu").engine.check(GenerationSettings(num_beams=2))  # plain: allowed


def test_prompt_ending_in_an_image_token_is_refused_by_the_prefix(checkpoint, docs):
    wrapper = VLM(pretrained=checkpoint, device="cpu")
    batch = batch_of(wrapper, docs[:1])
    inputs = dict(batch.inputs)
    inputs["input_ids"] = inputs["input_ids"].clone()
    inputs["input_ids"][:, -1] = wrapper.engine.image_token_id
    with pytest.raises(PrefixUnsupported, match="last position is an image"):
        compute_prefix(wrapper.model, inputs, wrapper.engine.family)
