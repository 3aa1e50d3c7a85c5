"""``--freeze_vision`` freezes exactly each family's vision tower: every parameter of the tower module the model
itself names (``visual`` on Qwen, ``vision_tower`` on LLaVA-1.5, LLaVA-NeXT and Gemma-3), and nothing else (the
projector, LLaVA-NeXT's ``image_newline`` and the language model stay trainable)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText

from families import family_for
from finetune.model import freeze_vision
from tests.support.environment import FAMILY_TYPES


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_freeze_vision_freezes_the_tower_module_and_nothing_else(family, family_checkpoint):
    checkpoint = family_checkpoint(family)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32)
    inner = model.model
    tower_name = "visual" if hasattr(inner, "visual") else "vision_tower"
    tower = {f"model.{tower_name}.{name}" for name, _ in getattr(inner, tower_name).named_parameters()}
    frozen = freeze_vision(model, family_for(str(checkpoint)))
    names = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    assert names == tower and frozen == len(tower) > 0
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    projector = {name for name in trainable if "multi_modal_projector" in name or "image_newline" in name}
    assert bool(projector) == (tower_name == "vision_tower")  # Qwen's merger is part of its tower
    assert ("model.image_newline" in projector) == (family == "llava_next")
