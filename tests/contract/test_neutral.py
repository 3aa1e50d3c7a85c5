"""Every method's neutral setting (its declaration's ``MethodSpec.neutral``) reproduces the baseline bit for bit.

The one home of that claim, on every family in float32 and on Qwen3-VL in half precision with a batch that mixes a
two-image prompt and a prompt without images: the answers and the first generated token's logits are exactly equal
(the neutral path is the baseline's own computation); for the methods that edit the last row, the whole-prompt prefill
run under the neutral editor equals the baseline's to float rounding (the edit is applied and changes nothing).
"""

from __future__ import annotations

import pytest
import torch

from interventions.adaptvis import AdaptVis
from interventions.pai import PAI
from interventions.vaf import VAF
from models.batch import GenerationSettings
from models.methods import METHODS
from models.names import ANY_FAMILY
from plugin.loading import engine_for
from tests.support.reference import CONTEXTS, prepare, sample_images
from tests.support.tolerance import assert_matches_reference

SETTINGS = GenerationSettings(max_new_tokens=6)
# what a method needs besides its neutral parameters to run at all on a 4-layer model (VEA: where its evidence comes
# from, any layers; VAF: a layer range inside the model, its authors' 9-14 being beyond it)
REQUIRED = {"vea": {"layers": "all"}, "vaf": {"start_layer": 0, "end_layer": 4}}
HALF = [pytest.param("bfloat16", marks=pytest.mark.bfloat16_sdpa), "float16"]


NEUTRAL_EDITORS = {  # each method's attention edit at its neutral setting, built from its math
    "adaptvis": lambda engine, batch: AdaptVis([1.0] * batch.size, range(engine.depth)),
    "clvs": lambda engine, batch: engine.method.method_for(engine, batch),
    "pai": lambda engine, batch: PAI([0.0] * batch.size, [range(engine.depth)] * batch.size, [True] * batch.size),
    "vaf": lambda engine, batch: VAF([1.0] * batch.size, [1.0] * batch.size, [range(engine.depth)] * batch.size,
                                     batch.image_token_mask),
}  # fmt: skip


def engine(checkpoint, method: str | None, **common):
    """The baseline (``method`` None), or the method at its neutral setting, as ``--model vlm_*`` runs them."""
    neutral = {**METHODS[method].neutral, **REQUIRED.get(method, {})} if method else {}
    return engine_for(ANY_FAMILY.name(method), pretrained=str(checkpoint), device="cpu", **common, **neutral)


@pytest.fixture(scope="module")
def baseline(checkpoint):
    plain = engine(checkpoint, None)
    return plain, plain.respond(prepare(plain), SETTINGS)


@pytest.mark.parametrize("method", list(METHODS))
def test_the_neutral_setting_reproduces_the_baseline(checkpoint, baseline, method):
    plain, expected = baseline
    neutral = engine(checkpoint, method)
    assert neutral.method.spec.is_neutral(neutral.method.params)
    got = neutral.respond(prepare(neutral), SETTINGS)
    assert got.texts == expected.texts
    assert torch.equal(got.first_token_logits, expected.first_token_logits)
    if not neutral.method.steers:  # VEA edits the image: nothing to run under an editor
        return
    batch = prepare(neutral)
    with neutral.steering(batch, NEUTRAL_EDITORS[method](neutral, batch)):
        steered = neutral.prefill_logits(batch)
    assert_matches_reference(steered, plain.prefill_logits(prepare(plain)))


def mixed_batch(engine):
    """Three prompts: one image, two images, none (left padding and a text-only row in one batch)."""
    one, two = sample_images()
    return engine.prepare([CONTEXTS[0], CONTEXTS[1], CONTEXTS[1]], [[one], [two, one], []], [0, 1, 2], ["unit"] * 3)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("method", list(METHODS))
def test_the_neutral_setting_reproduces_the_baseline_in_half_precision(tiny_checkpoint, dtype, method):
    plain, neutral = engine(tiny_checkpoint, None, dtype=dtype), engine(tiny_checkpoint, method, dtype=dtype)
    assert neutral.model.dtype == getattr(torch, dtype)
    expected = plain.respond(mixed_batch(plain), SETTINGS)
    got = neutral.respond(mixed_batch(neutral), SETTINGS)
    assert got.texts == expected.texts
    assert torch.equal(got.first_token_logits, expected.first_token_logits)
