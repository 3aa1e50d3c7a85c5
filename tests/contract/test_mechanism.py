"""The shared mechanism: pass-through, exact last-row recording, no-image no-op, prefill-only edits; on every model
family; and the import rules (no circles, the method math imports no family)."""

from __future__ import annotations

import pytest
import torch

from interventions import LastRowRecorder, SteeringState, record_image_attention, steer
from interventions.adaptvis import AdaptVis
from interventions.layers import parse_layers
from plugin.registered import VLMCLVS as CLVSModel
from plugin.registered import VLMAdaptVis as AdaptVisModel
from plugin.registered import VLMBaseline as VLM
from tests.support.reference import (
    adaptvis_row_fn,
    clvs_reference_logits,
    image_positions,
    prepare,
    reference_logits,
)
from tests.support.tolerance import assert_matches_reference, tolerance


@pytest.fixture(scope="module")
def baseline(checkpoint):
    return VLM(pretrained=str(checkpoint), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def adaptvis(checkpoint):
    return AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2)


def test_the_image_keys_are_the_checkpoints_image_token_positions(baseline, reference):
    """Every method and every reference reads the image keys from the engine's batch (``image_token_mask``); checked
    here against transformers' own config of the checkpoint: exactly the positions holding its image token (LLaVA-NeXT's
    tiles and newlines, Qwen's merged patches, Gemma-3's pooled tokens), none in a text-only sequence beside it."""
    model, _ = reference
    config = model.config
    token = config.image_token_id if getattr(config, "image_token_id", None) is not None else config.image_token_index
    batch = prepare(baseline, (True, False))
    expected = batch.inputs["input_ids"] == token
    assert torch.equal(batch.image_token_mask.cpu(), expected.cpu())
    assert int(expected[0].sum()) > 0 and int(expected[1].sum()) == 0


def test_steered_attention_without_state_is_sdpa(baseline, adaptvis):
    batch = prepare(baseline)
    assert adaptvis.model.config.text_config._attn_implementation != "sdpa"
    assert torch.equal(adaptvis.engine.prefill_logits(batch), baseline.engine.prefill_logits(batch))


def test_recorder_equals_eager_last_row(adaptvis, reference):
    model, eager = reference
    batch = prepare(adaptvis)
    reference_logits(model, batch)  # captures every layer's last row
    recorder = LastRowRecorder()
    with steer(adaptvis.model, SteeringState(batch.image_token_mask, observers=[recorder])):
        adaptvis.engine.prefill_logits(batch)
    assert recorder.recorded_layers == [0, 1, 2, 3]
    images = image_positions(batch)
    for layer in range(4):
        head_mean = eager.captured[layer].mean(dim=1)
        assert_matches_reference(recorder.used[layer], head_mean)
    for b in range(2):
        expected_mass = [float(eager.captured[layer].mean(dim=1)[b, images[b]].sum()) for layer in range(4)]
        assert_matches_reference(recorder.image_mass(b), expected_mass)
        total = torch.tensor(recorder.image_mass(b)) + torch.tensor(recorder.text_mass(b))
        assert_matches_reference(total, torch.ones(4))
    per_sequence = record_image_attention(adaptvis.model, batch.inputs, batch.image_token_mask, layers=[1, 3])
    for b in range(2):
        assert per_sequence[b].shape == (2, len(images[b]))
        expected = torch.stack([eager.captured[layer].mean(dim=1)[b, images[b]] for layer in (1, 3)])
        assert_matches_reference(per_sequence[b], expected)


def test_sequence_without_image_is_untouched(checkpoint, baseline, adaptvis):
    batch = prepare(baseline, with_images=(True, False))
    assert batch.image_token_mask[1].sum() == 0 and batch.image_token_mask[0].sum() > 0
    plain = baseline.engine.prefill_logits(batch)
    state = SteeringState(batch.image_token_mask, method=AdaptVis([0.2, 0.2], range(4)))
    with steer(adaptvis.model, state):
        steered = adaptvis.engine.prefill_logits(batch)
    assert torch.equal(steered[1], plain[1])
    assert (steered[0] - plain[0]).abs().max() > 10 * tolerance(plain[0])  # edited, well past the tolerance
    clvs = CLVSModel(pretrained=str(checkpoint), device="cpu", batch_size=2, uncertainty_threshold=0.0)
    method = clvs.method.method_for(clvs.engine, batch)
    with steer(clvs.model, SteeringState(batch.image_token_mask, method=method)):
        steered = clvs.engine.prefill_logits(batch)
    assert torch.equal(steered[1], plain[1]) and method.stop_layer == [None, None]
    assert (steered[0] - plain[0]).abs().max() > 10 * tolerance(plain[0])


def _attention_outputs(model, run) -> list[torch.Tensor]:
    """Every text attention module call's output, in call order."""
    outputs, handles = [], []
    for layer in model.model.language_model.layers:
        handles.append(layer.self_attn.register_forward_hook(lambda m, a, out: outputs.append(out[0].clone())))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _generate(model, batch):
    return model.generate(
        **batch.inputs, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True
    )


@torch.no_grad()
def test_decode_steps_are_untouched(baseline, adaptvis, reference):
    model, eager = reference
    batch = prepare(adaptvis)
    alphas, layers = [0.3, 1.6], [1, 3]  # layer 0 comes before any edit, layer 2 between two
    state = SteeringState(batch.image_token_mask, method=AdaptVis(alphas, layers))

    def steered_run():
        with steer(adaptvis.model, state):
            steered_run.output = _generate(adaptvis.model, batch)

    steered = _attention_outputs(adaptvis.model, steered_run)
    plain = _attention_outputs(baseline.model, lambda: _generate(baseline.model, batch))
    eager.row_fn = adaptvis_row_fn(alphas, set(layers), image_positions(batch))
    try:
        expected_outputs = _attention_outputs(model, lambda: setattr(eager, "result", _generate(model, batch)))
    finally:
        eager.row_fn = None
    expected = eager.result
    assert state.edited_layers == layers  # one edit per selected layer: the prefill only
    assert len(steered) == len(plain) == len(expected_outputs) == 4 * 5  # prefill + 4 decode steps, 4 layers each
    # prefill: every row but the last is the baseline's, bit for bit; a mixture-of-experts layer multiplies each
    # expert's tokens in one matmul whose shape (so its kernel's blocking, on some CPUs) depends on how many tokens
    # the expert got, which the edited last row can change: there, equal to the float32 tolerance
    moe = adaptvis.engine.family.model_type == "qwen3_vl_moe"
    for layer in range(4):
        if moe:
            assert_matches_reference(steered[layer][:, :-1], plain[layer][:, :-1])
        else:
            assert torch.equal(steered[layer][:, :-1], plain[layer][:, :-1])
    # the last row, layer by layer: untouched before the first edited layer, then exactly the eager reference's
    assert torch.equal(steered[0][:, -1], plain[0][:, -1])
    for layer in range(4):
        assert_matches_reference(steered[layer][:, -1], expected_outputs[layer][:, -1])
    for layer in layers:  # and the edit is a real one where alpha != 1 (both sequences), far above the agreement
        change = float((steered[layer][:, -1] - plain[layer][:, -1]).abs().amax(dim=-1).min())
        error = float((steered[layer][:, -1] - expected_outputs[layer][:, -1]).abs().max())
        allowed = tolerance(expected_outputs[layer][:, -1])
        assert change > 10 * allowed and change > 100 * error, (layer, change, error, allowed)
    # decode steps: the eager reference edits only the prefill's last row; all five steps agree with it
    got = steered_run.output
    assert torch.equal(got.sequences, expected.sequences)
    for step in range(5):
        assert_matches_reference(got.logits[step], expected.logits[step])


@torch.no_grad()
def test_clvs_edits_the_prefill_only(checkpoint, reference):
    model, eager = reference
    clvs = CLVSModel(pretrained=str(checkpoint), device="cpu", batch_size=2, uncertainty_threshold=0.0)
    batch = prepare(clvs)
    method = clvs.method.method_for(clvs.engine, batch)
    state = SteeringState(batch.image_token_mask, method=method)
    with steer(clvs.model, state):
        got = _generate(clvs.model, batch)
    assert state.edited_layers == [0, 1, 2, 3] and state.prefills == 1
    first, _ = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, [None, None])
    assert_matches_reference(got.logits[0], first)


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers(None, 3) == [0, 1, 2]
    assert parse_layers("[0,1,2,20]", 28) == [0, 1, 2, 20]
    assert parse_layers("[0-13,20]", 28) == list(range(14)) + [20]
    assert parse_layers([3, 1, 3], 4) == [1, 3]
    assert parse_layers(2, 4) == [2]
    assert parse_layers("<32", 40) == list(range(32)) and parse_layers("<32", 4) == [0, 1, 2, 3]  # AdaptVis' idx < 32
    for bad in ("[1,", "[]", "[a]", "[5-2]", "[0,30]", True, "[-1]", "<0", "<x", "<"):
        with pytest.raises(ValueError, match="layers"):
            parse_layers(bad, 28)


def test_steer_refuses_a_model_on_plain_sdpa(baseline):
    batch = prepare(baseline)
    with pytest.raises(RuntimeError, match="use_steered_attention"):
        with steer(baseline.model, SteeringState(batch.image_token_mask)):
            pass
