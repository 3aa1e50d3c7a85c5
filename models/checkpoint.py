"""A checkpoint resolved once: its config, family adapter, depth and processor, before any weight is loaded.

Every question asked of a checkpoint before loading it (which family, how deep, does a method run on it, what does a
preset set for it) is answered from this one object, so the config is read once and a refusal comes before the
weights. :meth:`Checkpoint.load` then loads the weights through the family.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from families import Family, FamilyError, family_of_type, model_type_of


@dataclass
class Checkpoint:
    """``pretrained`` (a folder or hub id) with its family and config; the processor is read on first use."""

    pretrained: str
    family: Family
    config: Any
    model_name: str = ""  # the model asking, named in every refusal

    @classmethod
    def resolve(cls, pretrained: str, allowed: tuple[str, ...] | None = None, model_name: str = "") -> Checkpoint:
        """The checkpoint's family from its config alone (read once); a model type ``model_name`` does not take is
        refused."""
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(pretrained)
        except (OSError, ValueError, KeyError):  # not a checkpoint, or a model type transformers does not know:
            config = None  # the raw config (or the reason there is none) names it below
        try:
            model_type = config.model_type if config is not None else model_type_of(pretrained)
            family = family_of_type(model_type, pretrained, allowed, model_name)
        except FamilyError as error:
            raise ValueError(f"{model_name}: {error}") from None
        if config is None:  # a supported model type that transformers cannot read: say what it said
            AutoConfig.from_pretrained(pretrained)
        return cls(str(pretrained), family, config, model_name)

    @property
    def model_type(self) -> str:
        return self.family.model_type

    @property
    def depth(self) -> int:
        """Decoder layers of the language model."""
        return int(self.family.text_config_of(self.config).num_hidden_layers)

    @cached_property
    def processor(self) -> Any:
        """The checkpoint's processor, checked by the family (images, a chat template that opens the answer)."""
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(self.pretrained)
        try:
            self.family.check(self.config, processor, self.pretrained)
        except FamilyError as error:
            raise ValueError(f"{self.model_name}: {error}") from None
        return processor

    def grid_problem(self) -> str | None:
        """Why this checkpoint's image tokens do not form one grid per image (None when they do)."""
        return self.family.grid_problem(self.config)

    def configure_pixels(self, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
        """Apply a pixel budget to the processor (a family that takes none refuses it by name)."""
        try:
            return self.family.configure_pixels(self.processor, min_pixels, max_pixels)
        except FamilyError as error:
            raise ValueError(f"{self.model_name}: {error}") from None

    def load(self, dtype: torch.dtype, **placement: Any) -> torch.nn.Module:
        """The weights, with SDPA attention (the steered attention wraps it), in evaluation mode."""
        return self.family.load(self.pretrained, dtype, **placement).eval()
