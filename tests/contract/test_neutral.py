"""Every method's neutral setting reproduces the baseline bit for bit, on every family.

One test for what four files used to check each in its own way: the answers, the first generated token's logits
(exactly equal: the neutral path is the baseline's own computation) and, for the methods that edit the last row,
the whole-prompt prefill run under the neutral editor (to float rounding: the edit is applied and changes nothing).
"""

from __future__ import annotations

import pytest
import torch

from models import model_class
from models.batch import GenerationSettings
from models.names import ANY_FAMILY
from tests.support.reference import prepare
from tests.support.tolerance import assert_matches_reference

SETTINGS = GenerationSettings(max_new_tokens=6)
NEUTRAL = {
    "adaptvis": {"sharpen_weight": 1, "smoothen_weight": 1},
    "clvs": {"smoothing": 1, "position_unbiased": False},
    "vea": {"highlight_strength": 1, "layers": "all"},
}


@pytest.fixture(scope="module")
def baseline(checkpoint):
    model = model_class(ANY_FAMILY.name(None))(pretrained=str(checkpoint), device="cpu", batch_size=2)
    return model, model.engine.respond(prepare(model), SETTINGS)


@pytest.mark.parametrize("method", list(NEUTRAL))
def test_the_neutral_setting_reproduces_the_baseline(checkpoint, baseline, method):
    plain, expected = baseline
    neutral = model_class(ANY_FAMILY.name(method))(
        pretrained=str(checkpoint), device="cpu", batch_size=2, **NEUTRAL[method]
    )
    assert neutral.method.SPEC.is_neutral(neutral.method.params)
    got = neutral.engine.respond(prepare(neutral), SETTINGS)
    assert got.texts == expected.texts
    assert torch.equal(got.first_token_logits, expected.first_token_logits)
    if method == "vea":
        return
    batch = prepare(neutral)
    editor = (
        neutral.method.method_for(neutral.engine, batch)
        if method == "clvs"
        else neutral.method.editor(neutral.engine, batch, None, [tuple([1.0] * batch.size)], None)
    )
    with neutral.engine.steering(batch, editor):
        steered = neutral.engine.prefill_logits(batch)
    assert_matches_reference(steered, plain.engine.prefill_logits(prepare(plain)))
