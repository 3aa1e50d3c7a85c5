"""LLaVA-1.5 in the llava-hf format: a CLIP tower, a projector, a Llama decoder with 1-D RoPE.

Every image is resized so its short side is the processor's ``shortest_edge`` (336) and centre-cropped to a square
(336 x 336), then cut into ``patch_size`` (14) pixel patches: one token per patch, ``24 x 24 = 576`` tokens in
row-major order (``vision_feature_select_strategy="default"`` drops CLIP's class token, so every image token has a
cell; a checkpoint with ``"full"`` keeps the class token, on which AdaptVis and CLVS still run but VEA and the
attention log's maps cannot). ``pixel_values`` are ``[images, 3, H, W]``, normalised by CLIP's per-channel mean and std. Positions are one
per token, as for any Llama; the pre-RoPE queries and keys are the projections' outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from families.base import FixedSizeFamily, Region
from families.pixels import PlanarLayout
from interventions.prefix import PreRope


@dataclass(frozen=True)
class LLaVA(FixedSizeFamily):
    def grid_problem(self, config: Any) -> str | None:
        strategy = getattr(config, "vision_feature_select_strategy", "default")
        if strategy == "default":
            return None
        return (
            f"its vision_feature_select_strategy is {strategy!r}, which keeps CLIP's class token among each image's "
            "tokens, a token with no cell of the image grid (LLaVA-1.5's 'default' drops it)"
        )

    def image_grids(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[tuple[int, int]]]:
        if "pixel_values" not in inputs:
            return [[] for _ in counts]
        height, width = inputs["pixel_values"].shape[-2:]
        patch = int(processor.patch_size)
        grid = (int(height) // patch, int(width) // patch)
        return [[grid] * count for count in counts]

    def image_regions(self, processor: Any, sizes: Sequence[tuple[int, int]]) -> list[Region]:
        """The centre square the processor keeps: after resizing the short side to ``shortest_edge``, the crop."""
        image_processor = processor.image_processor
        shortest = dict(image_processor.size).get("shortest_edge")
        crop = dict(image_processor.crop_size or {}) if getattr(image_processor, "do_center_crop", False) else {}
        regions = []
        for width, height in sizes:
            if shortest is None or not crop:
                regions.append((0.0, 0.0, float(width), float(height)))
                continue
            # in exact arithmetic: a float scale put a 480 x 640 image's crop at y = 80.00000000000001, so a box edge
            # on a cell boundary labelled the cell before it
            scale = Fraction(int(shortest), min(int(width), int(height)))
            left = (int(width) * scale - int(crop["width"])) / 2 / scale
            top = (int(height) * scale - int(crop["height"])) / 2 / scale
            right, bottom = left + int(crop["width"]) / scale, top + int(crop["height"]) / scale
            regions.append((float(left), float(top), float(right), float(bottom)))
        return regions

    def pixel_layout(self, processor: Any) -> Any:
        image_processor = processor.image_processor
        return PlanarLayout(
            patch_size=int(processor.patch_size),
            image_mean=tuple(float(v) for v in image_processor.image_mean),
            image_std=tuple(float(v) for v in image_processor.image_std),
        )

    @staticmethod
    def _input_size(image_processor: Any) -> tuple[int, int]:
        crop = dict(image_processor.crop_size or {})
        if getattr(image_processor, "do_center_crop", False) and crop:
            return int(crop["height"]), int(crop["width"])
        size = dict(image_processor.size)
        side = int(size.get("shortest_edge", size.get("height", 0)))
        return side, side


LLAVA_1_5 = LLaVA(
    model_type="llava",
    title="LLaVA-1.5",
    model_class="LlavaForConditionalGeneration",
    pre_rope=PreRope("q_proj", "k_proj"),
    vision_prefixes=("vision_tower.",),
    rope="1-D RoPE",
    testbed="testbed.tiny_llava",
    benchmark_shapes=("tiny", "7b-wide"),
    benchmark_sides=(336,),  # its crop: always 576 image tokens
    fixed_size="LLaVA-1.5 resizes and crops every image to its processor's crop size (336 x 336 for the released "
    "checkpoints)",
)
