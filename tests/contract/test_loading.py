"""One loading path: an engine made without lmms-eval (``plugin.loading.engine_for``) is the adapter's engine."""

from __future__ import annotations

import pytest
import torch

from models.batch import GenerationSettings
from plugin import model_class
from plugin.loading import engine_for
from tests.support.reference import CONTEXTS, prepare, sample_images


@pytest.mark.parametrize("name", ["vlm_baseline", "qwen3vl_adaptvis", "vlm_clvs"])
def test_engine_for_answers_as_the_lmms_eval_adapter(tiny_checkpoint, name):
    arguments = {"pretrained": str(tiny_checkpoint), "device": "cpu"}
    adapter = model_class(name)(**arguments, batch_size=2)
    engine = engine_for(name, **arguments)
    settings = GenerationSettings(max_new_tokens=3)
    expected = adapter.engine.respond(prepare(adapter), settings)
    visuals = [[image] for image in sample_images()]
    got = engine.respond(engine.prepare(list(CONTEXTS), visuals, [0, 1], ["unit", "unit"]), settings)
    assert got.texts == expected.texts and torch.equal(got.first_token_logits, expected.first_token_logits)
    assert engine.name == name and type(engine.method) is type(adapter.engine.method)


def test_engine_for_refuses_what_no_model_of_that_name_takes(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown model argument\\(s\\) for vlm_clvs: colour"):
        engine_for("vlm_clvs", pretrained=str(tiny_checkpoint), device="cpu", colour="red")
    with pytest.raises(KeyError, match="unknown model 'vlm_pasta'"):
        engine_for("vlm_pasta", pretrained=str(tiny_checkpoint))
