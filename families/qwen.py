"""Qwen3-VL and Qwen2.5-VL: M-RoPE positions, images as rows of merged patches.

Both lay an image out as ``grid_t x grid_h x grid_w`` patches of ``patch_size`` pixels, merged ``merge_size x
merge_size`` into one token, so a token covers ``patch_size * merge_size`` pixels (32 on Qwen3-VL, 28 on Qwen2.5-VL).
Their prompt positions are M-RoPE: ``get_rope_index`` gives every image token a (t, h, w) position and text after an
image continues from the image's largest; the model keeps ``rope_deltas`` between forwards, which a pass on a shared
prefix must restore. Qwen3-VL normalises queries and keys before RoPE (``q_norm`` / ``k_norm``); Qwen2.5-VL's
pre-RoPE queries and keys are its projections' outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from families.base import Family, per_sequence, text_positions
from families.pixels import PatchLayout
from interventions.prefix import PreRope


@dataclass(frozen=True)
class QwenVL(Family):
    def encoder_inputs(self, inputs: Any) -> dict[str, torch.Tensor]:
        return {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}

    def image_grids(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[tuple[int, int]]]:
        if "image_grid_thw" not in inputs:
            return [[] for _ in counts]
        merge = processor.image_processor.merge_size
        return per_sequence(
            [(int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"].tolist()], counts
        )

    def pixel_layout(self, processor: Any) -> Any:
        return PatchLayout.from_processor(processor.image_processor)

    def prompt_positions(self, model: torch.nn.Module, inputs: Any) -> tuple[torch.Tensor, Any]:
        """``[4, B, N]`` (the text row, then M-RoPE's three) and the ``rope_deltas`` ``[B, 1]`` generation uses."""
        text = text_positions(inputs)
        input_ids = inputs["input_ids"]
        grids = {key: inputs[key] for key in ("image_grid_thw", "video_grid_thw") if inputs.get(key) is not None}
        if grids and inputs.get("mm_token_type_ids") is not None:
            attention_mask = inputs.get("attention_mask")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            vision, deltas = model.model.get_rope_index(
                input_ids, mm_token_type_ids=inputs["mm_token_type_ids"], attention_mask=attention_mask, **grids
            )
        else:
            vision = text[None].expand(3, -1, -1)
            deltas = torch.zeros(input_ids.shape[0], 1, dtype=torch.long, device=input_ids.device)
        return torch.cat([text[None], vision.to(text.device)], dim=0), deltas

    def forward_positions(self, inputs: Any) -> dict[str, torch.Tensor]:
        """Nothing: the forward builds its M-RoPE positions from the attention mask, as ``generate`` does."""
        return {}

    def rope_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[1:]

    def restore(self, model: torch.nn.Module, state: Any) -> None:
        model.model.rope_deltas = state

    def tile_state(self, state: Any, copies: int) -> Any:
        return state.repeat(copies, 1)

    def ties_positions_to_images(self) -> bool:
        return True


QWEN3_VL = QwenVL(
    model_type="qwen3_vl",
    title="Qwen3-VL",
    model_class="Qwen3VLForConditionalGeneration",
    pre_rope=PreRope("q_norm", "k_norm"),
    vision_prefixes=("visual.",),
    rope="M-RoPE",
    testbed="testbed.tiny_qwen3",
    benchmark_shapes=("tiny", "2b-wide", "7b-wide"),
    benchmark_sides=(512, 1024),  # 32 px a token: 256 and 1,024 image tokens
)
# Qwen3-VL-30B-A3B and 235B-A22B: the same attention, vision tower and positions; only each layer's MLP is a sparse
# block of routed experts, which no method touches.
QWEN3_VL_MOE = QwenVL(
    model_type="qwen3_vl_moe",
    title="Qwen3-VL MoE",
    model_class="Qwen3VLMoeForConditionalGeneration",
    pre_rope=PreRope("q_norm", "k_norm"),
    vision_prefixes=("visual.",),
    rope="M-RoPE",
    testbed="testbed.tiny_qwen3_moe",
    benchmark_sides=(512, 1024),  # as Qwen3-VL: 256 and 1,024 image tokens
)
QWEN2_5_VL = QwenVL(
    model_type="qwen2_5_vl",
    title="Qwen2.5-VL",
    model_class="Qwen2_5_VLForConditionalGeneration",
    pre_rope=PreRope("q_proj", "k_proj"),
    vision_prefixes=("visual.",),
    rope="M-RoPE",
    testbed="testbed.tiny_qwen2_5",
    benchmark_shapes=("tiny", "7b-wide"),
    benchmark_sides=(448, 896),  # 28 px a token: 256 and 1,024 image tokens
)
