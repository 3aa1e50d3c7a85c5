"""VAF on the fused attention equals an eager reference of its authors' rule, on every family, with and without a
system prompt: every row after the image (the question's and each decoding step's) multiplies, in the chosen layers,
its logits on image keys by ``enh_para`` and on the keys before the image by ``sup_para``, before the mask.

The reference is a transcription of ustc-hyin/ClearSight's ``AttnAdapter.py`` on full ``N x N`` scores, with the two
spans counted from each sequence's tokens instead of their hard-coded ``SYS_LEN`` and ``IMG_LEN``, and recomputes the
whole sequence at every step (no cache).
"""

from __future__ import annotations

import pytest

from interventions.vaf import VAF
from models.batch import GenerationSettings
from models.names import ANY_FAMILY
from plugin.loading import engine_for
from tests.support.reference import (
    assert_same_answers,
    greedy_reference,
    image_positions,
    prepare,
    prepare_one,
    recomputed_logits,
    steered_generation,
    vaf_weights_fn,
    with_tokens,
)
from tests.support.tolerance import assert_matches_reference, tolerance

STEPS = 4
SYSTEM_PROMPT = "You are a careful assistant. Look at every part of the picture before you answer."


@pytest.fixture(scope="module")
def depth(checkpoint):
    return engine_for(ANY_FAMILY.name(None), pretrained=str(checkpoint), device="cpu").depth


@pytest.mark.parametrize("sequences", [2, 1], ids=["padded-pair", "one-sequence"])
def test_every_row_after_the_image_is_edited_as_the_reference(checkpoint, reference, depth, sequences):
    """The mechanism: each step's logits of a steered ``generate`` equal the recomputed reference's on its tokens (a
    padded pair whose images end at different rows: the kernel's mask rows; one sequence: no mask, the kernel's own
    causal flag)."""
    model, eager = reference
    engine = engine_for(ANY_FAMILY.name("vaf"), pretrained=str(checkpoint), device="cpu", start_layer=0, end_layer=1)
    batch = prepare(engine) if sequences == 2 else prepare_one(engine)
    layers = range(1, depth)
    editor = VAF([1.6] * batch.size, [0.4] * batch.size, [layers] * batch.size, batch.image_token_mask)
    tokens, logits = steered_generation(engine, batch, editor, STEPS)
    edit = vaf_weights_fn(1.6, 0.4, layers, image_positions(batch))
    for step in range(STEPS):
        sequence = with_tokens(batch.inputs, tokens[:, :step])
        expected = recomputed_logits(model, eager, sequence, weights_fn=edit)
        assert_matches_reference(logits[step], expected)
        plain = recomputed_logits(model, eager, sequence)
        assert (expected - plain).abs().max() > 10 * tolerance(expected)  # the edit changed every step


@pytest.mark.parametrize("system_prompt", [None, SYSTEM_PROMPT], ids=["no-system-prompt", "system-prompt"])
def test_the_model_answers_as_the_reference(checkpoint, reference, depth, system_prompt):
    """The runner: the answers and the first token's logits as the reference's greedy generation, the suppressed span
    being each sequence's tokens before its image (the system prompt's among them when there is one)."""
    model, eager = reference
    extra = {"system_prompt": system_prompt} if system_prompt else {}
    engine = engine_for(ANY_FAMILY.name("vaf"), pretrained=str(checkpoint), device="cpu", enh_para=1.6, sup_para=0.4,
                        start_layer=1, end_layer=depth, **extra)  # fmt: skip
    batch = prepare(engine)
    response = engine.respond(batch, GenerationSettings(max_new_tokens=STEPS))
    edit = vaf_weights_fn(1.6, 0.4, range(1, depth), image_positions(batch))
    tokens, scores, complete = greedy_reference(
        lambda tokens: recomputed_logits(model, eager, with_tokens(batch.inputs, tokens), weights_fn=edit),
        engine,
        batch.size,
        STEPS,
    )
    assert_matches_reference(response.first_token_logits, scores[0])
    assert_same_answers(engine, response.texts, tokens, complete)
    real = batch.inputs["attention_mask"].bool()
    if system_prompt:
        plain = prepare(
            engine_for(ANY_FAMILY.name("vaf"), pretrained=str(checkpoint), device="cpu", start_layer=1, end_layer=depth)
        )
    for b, decision in enumerate(extra["decision"] for extra in response.extras):
        keys = image_positions(batch)[b]
        before = int(real[b, : min(keys)].sum())  # the template's opening and any system prompt, no padding
        assert decision == {
            "enh_para": 1.6,
            "sup_para": 0.4,
            "layers": [1, depth],
            "image_keys": len(keys),
            "suppressed_keys": before,
            "prompt_rows_after_image": batch.inputs["input_ids"].shape[1] - 1 - max(keys),
        }
        if system_prompt:  # the system prompt's tokens are among the suppressed ones
            first = min(image_positions(plain)[b])
            assert before >= int(plain.inputs["attention_mask"][b, :first].sum()) + len(SYSTEM_PROMPT.split())
