"""CLVS on the fused attention equals an eager reference of METHODS.md; stop layer and positions checked; on every
model family (M-RoPE for the Qwen families, 1-D RoPE for LLaVA-1.5)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText

from interventions import SteeringState, steer
from interventions.clvs import unbiased_position_ids
from models.batch import GenerationSettings
from plugin.registered import VLMCLVS as CLVSModel
from testbed.tiny import build_tiny_checkpoint
from tests.support.environment import FAMILY_TYPES
from tests.support.reference import (
    LENS_TOP_K,
    clvs_reference_logits,
    independent_unbiased_positions,
    lens_entropy,
    lens_logits,
    load_reference_model,
    prepare,
    sample_images,
)
from tests.support.tolerance import assert_matches_reference, entropy_tolerance, tolerance


def _clvs(checkpoint, **kwargs) -> CLVSModel:
    return CLVSModel(pretrained=str(checkpoint), device="cpu", batch_size=2, **kwargs)


def _steered(wrapper: CLVSModel, batch):
    method = wrapper.method.method_for(wrapper.engine, batch)
    with steer(wrapper.model, SteeringState(batch.image_token_mask, method=method)):
        logits = wrapper.engine.prefill_logits(batch)
    return logits, method


@pytest.fixture(scope="module", params=FAMILY_TYPES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def checkpoint(family, family_checkpoint):
    return family_checkpoint(family)


def test_unbiased_positions_collapse_each_image_to_one_position(checkpoint):
    wrapper = _clvs(checkpoint)
    one, two = sample_images()
    two_images = wrapper.engine.prepare(["Two images here."], [[one, two]], [0], ["unit"])
    for batch, images_per_sequence in ((prepare(wrapper), [1, 1]), (two_images, [2])):
        inputs = batch.inputs
        family = wrapper.engine.family
        positions = family.rope_positions(family.prompt_positions(wrapper.model, inputs)[0])
        got = unbiased_position_ids(positions, batch.image_token_mask, inputs["attention_mask"])
        expected = independent_unbiased_positions(batch, wrapper.model.config.model_type)
        assert got.shape == expected.shape == positions.shape
        got, expected = (t if t.dim() == 3 else t[None] for t in (got, expected))  # 1-D RoPE: one row
        valid = inputs["attention_mask"].bool()
        for b, count in enumerate(images_per_sequence):
            assert torch.equal(got[:, b, valid[b]], expected[:, b, valid[b]])
            image = batch.image_token_mask[b]
            assert got[:, b, image].unique().numel() == count
            # each image counts as one position
            assert int(got[0, b, -1]) == int(valid[b].sum()) - int(image.sum()) + count - 1


@pytest.mark.parametrize(
    "smoothing, memory, unbiased",
    [(0.7, 0.8, True), (0.5, 0.8, False), (0.3, 0.5, True), (1.0, 0.8, True)],
)
def test_smoothing_equals_eager_reference(checkpoint, reference, smoothing, memory, unbiased):
    model, eager = reference
    wrapper = _clvs(
        checkpoint,
        smoothing=smoothing,
        window_memory_size=memory,
        position_unbiased=unbiased,
        uncertainty_threshold=0,
    )
    batch = prepare(wrapper)
    assert not batch.inputs["attention_mask"].all()  # left padding in the batch
    got, method = _steered(wrapper, batch)
    expected, _ = clvs_reference_logits(model, eager, batch, smoothing, memory, unbiased, [None, None])
    assert_matches_reference(got, expected)
    assert method.stop_layer == [None, None]
    plain, _ = clvs_reference_logits(model, eager, batch, 1.0, memory, False, [None, None])
    assert (got - plain).abs().max() > 10 * tolerance(expected)  # the method moved the logits well past the tolerance


def _choose_threshold(entropies: dict[int, list[float]], margin: float) -> tuple[float, list[int | None]]:
    """A threshold at least ``margin`` from every entropy, preferring per-sequence stops that differ."""
    values = sorted({value for row in entropies.values() for value in row})
    best = None
    for low, high in zip(values, values[1:]):
        if high - low < 2 * margin:
            continue
        threshold = (low + high) / 2
        stops = [
            next((layer for layer in sorted(entropies) if entropies[layer][b] < threshold), None) for b in range(2)
        ]
        score = (len(set(stops)), -min(layer if layer is not None else 99 for layer in stops))
        if best is None or score > best[0]:
            best = (score, threshold, stops)
    assert best is not None
    return best[1], best[2]


@pytest.mark.parametrize("norm", [True, False])
def test_stops_where_the_logit_lens_entropy_first_drops(tmp_path_factory, family, norm):
    checkpoint = build_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny8") / "checkpoint", num_layers=8, seed=1, family=family
    )
    sharpened = AutoModelForImageTextToText.from_pretrained(checkpoint)
    if sharpened.lm_head.weight is sharpened.get_input_embeddings().weight:  # Gemma-3 ties them: scale the head alone
        sharpened.config.tie_word_embeddings = sharpened.config.get_text_config().tie_word_embeddings = False
        sharpened.lm_head.weight = torch.nn.Parameter(sharpened.lm_head.weight.detach().clone())
    with torch.no_grad():  # a random model's lens is near uniform; larger logits spread the entropies apart
        sharpened.lm_head.weight.mul_(30)
    sharpened.save_pretrained(checkpoint)
    model, eager = load_reference_model(checkpoint)
    probe = _clvs(checkpoint)
    batch = prepare(probe)
    _, hidden = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, [None, None])
    with torch.no_grad():
        lens = {layer: lens_logits(model, hidden[layer], norm) for layer in range(5, 8)}  # l > 8 // 2
    entropies = {layer: lens_entropy(logits).tolist() for layer, logits in lens.items()}
    allowed = {layer: entropy_tolerance(logits, LENS_TOP_K).tolist() for layer, logits in lens.items()}
    # twice the largest tolerance: the method's entropies, each within its tolerance, fall on the reference's side
    threshold, expected_stops = _choose_threshold(entropies, margin=2 * max(max(row) for row in allowed.values()))
    assert any(stop is not None for stop in expected_stops)
    wrapper = _clvs(checkpoint, uncertainty_threshold=threshold, logit_lens_norm=norm)
    got, method = _steered(wrapper, batch)
    assert method.stop_layer == expected_stops
    for layer, row in method.entropies.items():
        active = [b for b in range(2) if expected_stops[b] is None or layer <= expected_stops[b]]
        for b in active:
            assert abs(row[b].item() - entropies[layer][b]) <= allowed[layer][b], (layer, b)
    expected, _ = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, expected_stops)
    assert_matches_reference(got, expected)
    response = wrapper.engine.respond(prepare(wrapper), GenerationSettings(max_new_tokens=1))
    assert [extra["decision"]["stop_layer"] for extra in response.extras] == expected_stops


def test_bad_arguments_are_refused_by_name(checkpoint):
    with pytest.raises(ValueError, match="smoothing"):
        _clvs(checkpoint, smoothing=1.5)
    with pytest.raises(ValueError, match="position_unbiased"):
        _clvs(checkpoint, position_unbiased="maybe")
    with pytest.raises(ValueError, match="uncertainty_threshold"):
        _clvs(checkpoint, uncertainty_threshold="low")
