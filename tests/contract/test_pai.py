"""PAI on the fused attention equals an eager reference of its authors' rule, on every family: the row choosing each
token (the prompt's last, then every decoding step's) edited, with and without the image-free guidance.

The reference recomputes the whole sequence at every step (no cache) and edits, in the chosen layers, every row from
the prompt's last on, as LALBJ/PAI's ``attention.py`` edits each of them when it is computed (after the mask:
``a + alpha * |a|`` on the image columns; under their KV cache each row is computed once, as the last row of its
forward, and what later rows see of it is that edited computation); it guides with a plain transcription of their
``CFG.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from interventions.pai import PAI
from models.batch import GenerationSettings
from models.names import ANY_FAMILY
from plugin.loading import engine_for
from tests.support.reference import (
    assert_same_answers,
    greedy_reference,
    image_positions,
    pai_weights_fn,
    prepare,
    recomputed_logits,
    steered_generation,
    with_tokens,
)
from tests.support.tolerance import assert_matches_reference, tolerance

STEPS = 4


def guided(conditional: torch.Tensor, unconditional: torch.Tensor, gamma: float) -> torch.Tensor:
    """CFG.py, transcribed: log-softmax both, ``gamma * (s - u) + u``, below 0.1 of the top probability: -inf."""
    s, u = torch.log_softmax(conditional, -1), torch.log_softmax(unconditional, -1)
    out = gamma * (s - u) + u
    cutoff = math.log(0.1) + s.max(dim=-1, keepdim=True).values
    return out.masked_fill(s < cutoff, -float("inf"))


def prompt_edit(batch, alpha, layers, first_token=True):
    """The reference's edit of a sequence continuing ``batch``'s prompt: every row from the prompt's last on (from the
    first generated one when the first token's row is left alone)."""
    length = batch.inputs["input_ids"].shape[1]
    return pai_weights_fn(alpha, layers, image_positions(batch), length - 1 if first_token else length)


def reference_generation(engine, model, eager, batch, alpha, layers, gamma, first_token=True):
    """Greedy tokens and each step's scores (``greedy_reference``), every step recomputed from scratch."""
    edit = prompt_edit(batch, alpha, layers, first_token)
    image_free = engine.image_free(batch)

    def next_scores(tokens):
        scores = recomputed_logits(model, eager, with_tokens(batch.inputs, tokens), weights_fn=edit)
        if gamma == 1:
            return scores
        return guided(scores, recomputed_logits(model, eager, with_tokens(image_free.inputs, tokens)), gamma)

    return greedy_reference(next_scores, engine, batch.size, STEPS)


def assert_scores_match(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal where finite (to the suite's tolerance) and excluded (-inf) at the same tokens."""
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    finite = torch.isfinite(expected)
    assert_matches_reference(got[finite], expected[finite])


@pytest.fixture(scope="module")
def engines(checkpoint):
    depth = engine_for(ANY_FAMILY.name(None), pretrained=str(checkpoint), device="cpu").depth
    return checkpoint, depth


@pytest.mark.parametrize(
    ("first_token", "with_images"),
    [(True, (True, True)), (False, (True, True)), (True, (True, False))],
    ids=["first-token", "from-the-second", "beside-a-text-only-sequence"],
)
def test_every_decoding_row_is_edited_as_the_reference(engines, reference, first_token, with_images):
    """The mechanism: each step's logits of a steered ``generate`` equal the recomputed reference's on its tokens (a
    sequence without an image beside an edited one: its row keeps the kernel's output, the other's is replaced)."""
    checkpoint, depth = engines
    model, eager = reference
    engine = engine_for(ANY_FAMILY.name("pai"), pretrained=str(checkpoint), device="cpu", alpha=1.5, gamma=1.0,
                        start_layer=0)  # fmt: skip
    batch = prepare(engine, with_images)
    layers = range(1, depth)
    editor = PAI([1.5] * batch.size, [layers] * batch.size, [first_token] * batch.size)
    tokens, logits = steered_generation(engine, batch, editor, STEPS)
    edit = prompt_edit(batch, 1.5, layers, first_token)
    for step in range(STEPS):
        sequence = with_tokens(batch.inputs, tokens[:, :step])
        expected = recomputed_logits(model, eager, sequence, weights_fn=edit)
        assert_matches_reference(logits[step], expected)
        plain = recomputed_logits(model, eager, sequence)
        if step > 0 or first_token:  # the edit changed this step's logits, by far more than the tolerance
            assert (expected - plain).abs().max() > 10 * tolerance(expected)
        else:
            assert_matches_reference(logits[step], plain)


@pytest.mark.parametrize("gamma", [1.0, 1.5], ids=["attention-only", "guided"])
def test_the_model_answers_as_the_reference(engines, reference, gamma):
    """The runner, one setting (one whole-prompt pass) and the same setting in a sweep (the shared prefix), the
    image-free prompt decoded beside the answer: the answers and the scores the first token was chosen from, as the
    reference's greedy generation."""
    checkpoint, depth = engines
    model, eager = reference
    engine = engine_for(ANY_FAMILY.name("pai"), pretrained=str(checkpoint), device="cpu", alpha=0.8, gamma=gamma,
                        start_layer=1)  # fmt: skip
    batch = prepare(engine)
    response = engine.respond(batch, GenerationSettings(max_new_tokens=STEPS))
    tokens, scores, complete = reference_generation(engine, model, eager, batch, 0.8, range(1, depth), gamma)
    assert_same_answers(engine, response.texts, tokens, complete)
    assert_scores_match(response.first_token_logits, scores[0])
    point = engine.method.params
    swept = engine.answer(batch, GenerationSettings(max_new_tokens=STEPS), [point, replace(point, alpha=0.3)], True)
    assert swept[0].texts == response.texts
    assert_scores_match(swept[0].first_token_logits, scores[0])
    assert [extra["decision"] for extra in response.extras] == [
        {"alpha": 0.8, "gamma": gamma, "layers": [1, depth], "edit_first_token": True}
    ] * batch.size


def test_the_authors_code_with_guidance_leaves_the_first_row_unedited(engines, reference):
    checkpoint, depth = engines
    model, eager = reference
    engine = engine_for(ANY_FAMILY.name("pai"), pretrained=str(checkpoint), device="cpu", alpha=0.8, gamma=1.5,
                        start_layer=1, edit_first_token=False)  # fmt: skip
    batch = prepare(engine)
    response = engine.respond(batch, GenerationSettings(max_new_tokens=STEPS))
    tokens, scores, complete = reference_generation(
        engine, model, eager, batch, 0.8, range(1, depth), 1.5, first_token=False
    )
    assert_same_answers(engine, response.texts, tokens, complete)
    assert_scores_match(response.first_token_logits, scores[0])


def test_settings_answered_together_equal_each_alone(engines):
    """A sweep's settings share the prefixes (the image prompt's and the image-free one's) and run as one batch."""
    checkpoint, _ = engines
    engine = engine_for(ANY_FAMILY.name("pai"), pretrained=str(checkpoint), device="cpu", start_layer=1)
    batch = prepare(engine)
    settings = GenerationSettings(max_new_tokens=STEPS)
    points = [
        engine.method.params.__class__(alpha=a, gamma=g, start_layer=1) for a, g in [(0.5, 1.0), (0.9, 1.3), (0, 1)]
    ]
    together = engine.answer(batch, settings, points, share_neutral=True)
    for point, response in zip(points, together):
        alone = engine.answer_whole_prompt(batch, settings, point)
        assert response.texts == alone.texts
        assert_scores_match(response.first_token_logits, alone.first_token_logits)
