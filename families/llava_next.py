"""LLaVA-NeXT (LLaVA-1.6) in the llava-hf format: "anyres" images, a CLIP tower, a projector, a Llama / Mistral
decoder with 1-D RoPE.

Each image is seen twice. The base tile is the whole image squashed to the tower's square (336 px), 24 x 24 tokens.
The high-resolution view picks, among the processor's ``image_grid_pinpoints``, the canvas that best fits the image
(``select_best_resolution``), resizes the image into it keeping its aspect, pads it to the canvas, and cuts the canvas
into 336 px tiles, 24 x 24 tokens each; the model stitches the tiles into one grid of ``tiles_high * 24`` by
``tiles_wide * 24`` tokens, drops the token rows (or columns) that are only padding (``unpad_image``), and closes every
remaining row with an ``image_newline`` token. The prompt holds, per image, the base tile's 576 tokens then the
high-resolution rows, newlines included, all as ``<image>`` tokens (the processor counts them from ``image_sizes``).

For the methods (docs/METHODS.md, "LLaVA-NeXT"): AdaptVis and CLVS act on every image token, newlines included (the
authors select an image as one span of positions); VEA's evidence and the attention log's maps are folded onto the
high-resolution grid, the base tile's cells spread over it by area (``interventions.grids``), and VEA highlights every
tile and the base tile from that one map (``families.pixels.AnyResLayout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from families.base import FamilyError, Region, per_sequence
from families.llava import LLaVA
from families.pixels import AnyResLayout, anyres_geometry
from interventions.grids import ImageTokens, TokenGrid
from interventions.prefix import PreRope


@dataclass(frozen=True)
class LLaVANeXT(LLaVA):
    def check(self, config: Any, processor: Any, pretrained: str | None = None) -> None:
        super().check(config, processor, pretrained)
        image_processor = processor.image_processor
        if pretrained is not None:  # a loaded processor shows transformers' default canvases where the file has none
            saved, _ = type(image_processor).get_image_processor_dict(pretrained)
            if "image_grid_pinpoints" not in saved:
                raise FamilyError(
                    "the LLaVA-NeXT checkpoint's image processor settings have no image_grid_pinpoints; transformers "
                    "would fill in its default canvases (336 px tiles), which need not be the ones the checkpoint was "
                    "trained with: add the checkpoint's own image_grid_pinpoints to its processor settings"
                )
        pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
        if not pinpoints:
            raise FamilyError(
                "the LLaVA-NeXT checkpoint's image processor has no image_grid_pinpoints: without them an image's "
                "high-resolution tiles, and so its number of image tokens, cannot be laid out"
            )
        model_pinpoints = getattr(config, "image_grid_pinpoints", None)
        if model_pinpoints and [list(p) for p in model_pinpoints] != [list(p) for p in pinpoints]:
            raise FamilyError(
                f"the LLaVA-NeXT checkpoint's config has image_grid_pinpoints {model_pinpoints} but its image processor "
                f"{pinpoints}: the model would stitch the tiles differently from how the processor cut them"
            )

    def fixed_pixel_budget(self, processor: Any) -> tuple[int, int]:
        tile = self._input_size(processor.image_processor)[0]
        largest = max(int(h) * int(w) for h, w in processor.image_processor.image_grid_pinpoints)
        return tile * tile, largest

    def encoder_inputs(self, inputs: Any) -> dict[str, torch.Tensor]:
        return {"pixel_values": inputs["pixel_values"], "image_sizes": inputs["image_sizes"]}

    def image_tokens(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[ImageTokens]]:
        if "pixel_values" not in inputs:
            return [[] for _ in counts]
        return per_sequence(
            [self.layout_of(processor, int(h), int(w)) for h, w in inputs["image_sizes"].tolist()], counts
        )

    def layout_of(self, processor: Any, height: int, width: int) -> ImageTokens:
        """One image's tokens: the base tile's grid, then the unpadded high-resolution rows each closed by a newline.
        The maps are drawn on the high-resolution grid."""
        geometry = anyres_geometry(processor, height, width)
        base = geometry.tile // geometry.patch
        rows, columns = geometry.kept_rows, geometry.kept_columns
        return ImageTokens((rows, columns), (TokenGrid(base, base), TokenGrid(rows, columns, trailing=1)))

    def image_regions(self, processor: Any, sizes: Sequence[tuple[int, int]]) -> list[Region]:
        """The part of each image the kept high-resolution tokens cover (the whole image, to within a token of the
        unpadding's rounding), in the image's pixels."""
        regions = []
        for width, height in sizes:
            geometry = anyres_geometry(processor, height, width)
            x0, y0, x1, y1 = geometry.kept_canvas_box
            scale_x, scale_y = geometry.resized[1] / width, geometry.resized[0] / height
            left, top = geometry.paste
            box = ((x0 - left) / scale_x, (y0 - top) / scale_y, (x1 - left) / scale_x, (y1 - top) / scale_y)
            regions.append((max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])))
        return regions

    def pixel_layout(self, processor: Any) -> Any:
        return AnyResLayout.from_processor(processor)


LLAVA_NEXT = LLaVANeXT(
    model_type="llava_next",
    title="LLaVA-NeXT",
    model_class="LlavaNextForConditionalGeneration",
    pre_rope=PreRope("q_proj", "k_proj"),
    vision_prefixes=("vision_tower.",),
    rope="1-D RoPE",
    testbed="testbed.tiny_llava_next",
    benchmark_shapes=("tiny", "7b-wide"),
    # 1,176 image tokens (a 2-tile canvas: the base tile's 576, then 24 rows of 24 + a newline) and 2,928 (2 x 2 tiles)
    benchmark_sides=(336, 672),
    turn_closers=("[/INST]",),
    fixed_size="LLaVA-NeXT picks each image's resolution among its processor's image_grid_pinpoints",
)
