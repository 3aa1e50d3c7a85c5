"""Gemma-3 (``Gemma3ForConditionalGeneration``): a SigLIP tower pooled to a fixed token grid, a Gemma decoder.

Every image is resized, without keeping its aspect, to the processor's square ``size`` (896 x 896 for the released
checkpoints), cut into ``patch_size`` (14) pixel patches (64 x 64), and the projector average-pools the patches
``4 x 4`` into ``mm_tokens_per_image`` (256) tokens, a ``16 x 16`` grid in row-major order: one token covers 56 x 56
pixels. The prompt wraps them as ``<start_of_image>`` + 256 ``<image_soft_token>`` + ``<end_of_image>``; only the
soft tokens are image tokens. ``pixel_values`` are ``[images, 3, H, W]`` planes normalised by mean and std 0.5.

What differs from a plain causal decoder, and why the methods still hold (docs/METHODS.md, "Gemma-3"):

- image tokens attend to each other both ways (``token_type_ids`` mark them; the mask ORs each image's block into
  the causal mask). The prompt's last position is text, which no image token attends to, so positions 0..N-2 are
  still the same whatever the last row does: the shared prefix and the last-row invariant hold;
- five of every six layers are sliding-window layers (1,024 positions); the last row of such a layer sees only the
  keys in its window, which is the mask every method's row already carries;
- positions are 1-D, but layers of the two kinds have their own rotary base (10,000 local, 1,000,000 global);
- ``q_norm`` / ``k_norm`` normalise the queries and keys before RoPE, laid out ``[B, heads, q_len, head_dim]``.

Pan-and-scan (``do_pan_and_scan``) adds crops of an image as further images of 256 tokens each; it is off in the
released processors and refused here, so that an image is one grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from families.base import FamilyError, FixedSizeFamily
from families.pixels import PlanarLayout
from interventions.prefix import PreRope


@dataclass(frozen=True)
class Gemma3(FixedSizeFamily):
    def check(self, config: Any, processor: Any, pretrained: str | None = None) -> None:
        super().check(config, processor, pretrained)
        image_processor = processor.image_processor
        if getattr(image_processor, "do_pan_and_scan", False):
            raise FamilyError(
                "the Gemma-3 checkpoint's image processor has do_pan_and_scan=true, which adds crops of an image as "
                "further images; the methods need one token grid per image: set it to false in "
                "preprocessor_config.json"
            )
        height, width = self._input_size(image_processor)
        side = self._tokens_per_side(processor)
        if height != width or height % side:
            raise FamilyError(
                f"the Gemma-3 processor resizes images to {width} x {height}, which {side} x {side} image tokens do "
                "not tile in equal squares"
            )

    def layer0_rotary(self, model: torch.nn.Module, probe: torch.Tensor, positions: torch.Tensor) -> tuple:
        """Layer 0's own table: sliding-window layers rotate with base 10,000, global ones with 1,000,000, and the
        decoder keeps one table per kind."""
        kind = self.text_config(model).layer_types[0]
        return self.decoder(model).rotary_emb(probe, positions, kind)

    def image_grids(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[tuple[int, int]]]:
        if "pixel_values" not in inputs:
            return [[] for _ in counts]
        side = self._tokens_per_side(processor)
        return [[(side, side)] * count for count in counts]

    def pixel_layout(self, processor: Any) -> Any:
        image_processor = processor.image_processor
        height, _ = self._input_size(image_processor)
        return PlanarLayout(
            patch_size=height // self._tokens_per_side(processor),
            image_mean=tuple(float(v) for v in image_processor.image_mean),
            image_std=tuple(float(v) for v in image_processor.image_std),
        )

    @staticmethod
    def _input_size(image_processor: Any) -> tuple[int, int]:
        size = dict(image_processor.size)
        return int(size["height"]), int(size["width"])

    @staticmethod
    def _tokens_per_side(processor: Any) -> int:
        tokens = int(processor.image_seq_length)
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise FamilyError(f"the Gemma-3 processor gives {tokens} tokens per image, not a square grid")
        return side


GEMMA_3 = Gemma3(
    model_type="gemma3",
    title="Gemma-3",
    model_class="Gemma3ForConditionalGeneration",
    pre_rope=PreRope("q_norm", "k_norm", heads_first=True),
    vision_prefixes=("vision_tower.",),
    rope="1-D RoPE",
    testbed="testbed.tiny_gemma3",
    benchmark_shapes=("tiny", "4b-wide"),  # the family has no 7B
    benchmark_sides=(896,),  # its square: always 256 image tokens
    fixed_size="Gemma-3 resizes every image to its processor's square size (896 x 896 for the released checkpoints)",
)
