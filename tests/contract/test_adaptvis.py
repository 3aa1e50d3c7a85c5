"""AdaptVis on the fused attention equals an eager reference of METHODS.md, per sequence, prefill only; on every
model family (Qwen3-VL, Qwen2.5-VL, LLaVA-1.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interventions.adaptvis import AdaptVis, first_token_confidence
from models.batch import GenerationSettings
from plugin.registered import VLMAdaptVis as AdaptVisModel
from plugin.registered import VLMBaseline as VLM
from tests.support.reference import (
    CONTEXTS,
    adaptvis_row_fn,
    image_positions,
    prepare,
    reference_logits,
    sample_images,
)
from tests.support.tolerance import assert_matches_reference, tolerance


@pytest.fixture(scope="module")
def adaptvis(checkpoint):
    return AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2)


def _steered_logits(wrapper, batch, alphas, layers) -> torch.Tensor:
    with wrapper.engine.steering(batch, AdaptVis(torch.tensor(alphas), layers)):
        return wrapper.engine.prefill_logits(batch)


@pytest.mark.parametrize(
    "alphas, layers",
    [([0.2, 1.2], [0, 1, 2, 3]), ([1.5, 0.4], [1, 3]), ([0.0, 2.0], [0]), ([1.0, 0.5], [2, 3])],
)
def test_scaled_row_equals_eager_reference(adaptvis, reference, alphas, layers):
    model, eager = reference
    batch = prepare(adaptvis)
    assert batch.inputs["attention_mask"][0].all() != batch.inputs["attention_mask"][1].all()  # one is padded
    eager.row_fn = adaptvis_row_fn(alphas, set(layers), image_positions(batch))
    expected = reference_logits(model, batch)
    eager.row_fn = None
    got = _steered_logits(adaptvis, batch, alphas, layers)
    assert_matches_reference(got, expected)
    # the intervention did change the answer, by well over the tolerance (a random tiny model is not sensitive)
    assert (got - reference_logits(model, batch)).abs().max() > 10 * tolerance(expected)


def test_each_sequence_picks_its_branch_from_its_confidence(checkpoint, reference):
    model, eager = reference
    probe = AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2)
    batch = prepare(probe)
    confidence = first_token_confidence(reference_logits(model, batch))
    assert not torch.isclose(confidence[0], confidence[1])
    between = float(confidence.mean())
    low = int(torch.argmin(confidence))
    cases = {0.0: ["sharpen", "sharpen"], 1.01: ["smoothen", "smoothen"], between: ["sharpen", "sharpen"]}
    cases[between][low] = "smoothen"
    for threshold, branches in cases.items():
        wrapper = AdaptVisModel(
            pretrained=str(checkpoint),
            device="cpu",
            batch_size=2,
            confidence_threshold=threshold,
            sharpen_weight=1.7,
            smoothen_weight=0.3,
        )
        response = wrapper.engine.respond(prepare(wrapper), GenerationSettings(max_new_tokens=1))
        weights = {"sharpen": 1.7, "smoothen": 0.3}
        assert [extra["decision"]["alpha"] for extra in response.extras] == [weights[name] for name in branches]
        got_confidence = [extra["decision"]["confidence"] for extra in response.extras]
        assert_matches_reference(got_confidence, confidence)
        eager.row_fn = adaptvis_row_fn([weights[name] for name in branches], set(range(4)), image_positions(batch))
        expected = torch.softmax(reference_logits(model, batch), dim=-1)
        eager.row_fn = None
        assert_matches_reference(response.first_token_probs, expected)


def test_layers_argument_is_parsed_and_refused_by_name(checkpoint):
    wrapper = AdaptVisModel(pretrained=str(checkpoint), device="cpu", layers="[0-1,3]")
    assert wrapper.method.layers == [0, 1, 3]
    with pytest.raises(ValueError, match="layers"):
        AdaptVisModel(pretrained=str(checkpoint), device="cpu", layers="[0-x]")
    with pytest.raises(ValueError, match="layers.*out of range"):
        AdaptVisModel(pretrained=str(checkpoint), device="cpu", layers="[2,9]")
    with pytest.raises(ValueError, match="sharpen_weight"):
        AdaptVisModel(pretrained=str(checkpoint), device="cpu", sharpen_weight="big")


@pytest.mark.parametrize("rule", ["probability_rounded", "max_logit_rounded"])
def test_the_authors_confidence_rules_gate_on_the_first_tokens_logits(checkpoint, rule):
    """The decision logged per sequence is the rule applied to the baseline's first-token logits, with numpy's
    rounding, and the weight follows it."""
    baseline = VLM(pretrained=str(checkpoint), device="cpu", batch_size=2)
    logits = baseline.engine.prefill_logits(prepare(baseline)).double().numpy()
    if rule == "probability_rounded":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        expected = np.round((shifted / shifted.sum(axis=-1, keepdims=True)).max(axis=-1), 2)
    else:
        expected = np.round(logits.max(axis=-1), 2)
    threshold = float(expected.mean())  # between the two sequences' values, or on one of them
    wrapper = AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2, confidence_rule=rule,
                            confidence_threshold=threshold, smoothen_weight=0.5, sharpen_weight=1.5)  # fmt: skip
    response = wrapper.engine.respond(prepare(wrapper), GenerationSettings(max_new_tokens=1))
    decisions = [extra["decision"] for extra in response.extras]
    np.testing.assert_allclose([d["confidence"] for d in decisions], expected, rtol=0, atol=1e-9)
    assert [d["alpha"] for d in decisions] == [0.5 if c < threshold else 1.5 for c in expected]


def test_the_paper_preset_gives_each_sequence_its_tasks_setting(checkpoint):
    """adaptvis_paper has one setting per dataset: in one batch, a WhatsUp VG row and a VSR-protocol row each take
    their dataset's threshold, weights and confidence rule, here from the parts AdaptVis evaluates and tunes on
    (whatsup_vg_one's and vsr_zeroshot_test_adaptvis' lines); an explicit argument wins over every task's value."""
    tasks = ["whatsup_vg_one_adaptvis", "vsr_zeroshot_test_adaptvis_tune"]
    baseline = VLM(pretrained=str(checkpoint), device="cpu", batch_size=2)
    batch = baseline.engine.prepare(list(CONTEXTS), [[image] for image in sample_images()], [0, 1], tasks)
    logits = baseline.engine.prefill_logits(batch).double().numpy()
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probability = np.round((shifted / shifted.sum(axis=-1, keepdims=True)).max(axis=-1), 2)
    max_logit = np.round(logits.max(axis=-1), 2)
    expected_confidence = [probability[0], max_logit[1]]  # VG: the rounded probability; VSR: the rounded raw logit
    expected_alpha = [0.5 if probability[0] < 0.2 else 2.0, 0.5 if max_logit[1] < 0.64 else 1.2]
    for arguments, alphas in (({}, expected_alpha), ({"smoothen_weight": 0.3, "sharpen_weight": 0.3}, [0.3, 0.3])):
        paper = AdaptVisModel(
            pretrained=str(checkpoint), device="cpu", batch_size=2, preset="adaptvis_paper", **arguments
        )
        batch = paper.engine.prepare(list(CONTEXTS), [[image] for image in sample_images()], [0, 1], tasks)
        decisions = [
            extra["decision"] for extra in paper.engine.respond(batch, GenerationSettings(max_new_tokens=1)).extras
        ]
        np.testing.assert_allclose([d["confidence"] for d in decisions], expected_confidence, rtol=0, atol=1e-9)
        assert [d["alpha"] for d in decisions] == alphas


def test_the_paper_presets_edit_the_first_32_layers_as_their_code_does(tmp_path_factory):
    """AdaptVis' code edits where ``idx < 32`` (modeling_llama_add_attn.py:269): a 40-layer model (LLaVA-1.5-13B's
    depth) is edited in layers 0-31 only under adaptvis_paper; the last row equals the eager reference edited there."""
    from testbed.tiny import build_tiny_checkpoint
    from tests.support.reference import eager_logits, load_reference_model

    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("deep") / "checkpoint", num_layers=40, family="llava")
    for preset in ("adaptvis_paper", "scalingvis_paper"):
        wrapper = AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2, preset=preset)
        assert wrapper.method.layers == list(range(32))
    wrapper = AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2, preset="adaptvis_paper")
    batch = prepare(wrapper)
    response = wrapper.engine.respond(batch, GenerationSettings(max_new_tokens=1))
    alphas = [extra["decision"]["alpha"] for extra in response.extras]
    model, eager = load_reference_model(checkpoint)
    first_32 = eager_logits(model, eager, batch, adaptvis_row_fn(alphas, set(range(32)), image_positions(batch)))
    assert_matches_reference(response.first_token_logits, first_32)
    every = eager_logits(model, eager, batch, adaptvis_row_fn(alphas, set(range(40)), image_positions(batch)))
    assert (every - first_32).abs().max() > 10 * tolerance(first_32)  # layers 32-39 would have moved the logits
