"""Random-initialised checkpoints at a released model's widths, for the cost benchmarks (nothing downloaded).

Per family, ``tiny`` (the test checkpoint) and, for every family but ``qwen3_vl_moe`` (``tiny`` only), a wide shape with
the released model's widths but few layers, so that every model of a benchmark fits in 24 GB at once (they share one
copy of the weights):

| family | shape | widths of | text | vision |
|---|---|---|---|---|
| ``qwen3_vl`` | ``2b-wide`` | Qwen3-VL-2B | hidden 2048, 16 / 8 heads, head_dim 128, vocab 151,936, tied | hidden 1024, deepstack [5, 11, 17] |
| ``qwen3_vl`` | ``7b-wide`` | Qwen3-VL-8B | hidden 4096, 32 / 8 heads, head_dim 128, vocab 151,936 | hidden 1152, deepstack [8, 16, 24] |
| ``qwen2_5_vl`` | ``7b-wide`` | Qwen2.5-VL-7B | hidden 3584, 28 / 4 heads, vocab 152,064 | hidden 1280, window 112 |
| ``llava`` | ``7b-wide`` | LLaVA-1.5-7B | Llama-2-7B: hidden 4096, 32 / 32 heads, vocab 32,064 | CLIP ViT-L/14 at 336 px |
| ``llava_next`` | ``7b-wide`` | LLaVA-1.6-Vicuna-7B | as LLaVA-1.5-7B | CLIP ViT-L/14, 336 px tiles, the released five canvases |
| ``gemma3`` | ``4b-wide`` | Gemma-3-4B (the family has no 7B; VEA's model) | hidden 2560, 8 / 4 heads, head_dim 256, vocab 262,208, tied, every 6th layer global, the others sliding (1,024): measure with ``--text-layers 6`` or more | SigLIP at 896 px, hidden 1152, 256 tokens |

``--text-layers`` and ``--vision-layers`` set the depths (default 8 and 18, as the 2B measurements).

Each family's record declares its shapes (``Family.benchmark_shapes`` in ``families/``: :data:`SHAPES`); its test-bed
module (``Family.testbed``) builds them: ``build`` the tiny one (``testbed.tiny``), ``build_wide`` the wide ones
(``testbed.tiny.WIDE_BUILDERS``).
"""

from __future__ import annotations

from pathlib import Path

from families import FAMILIES

SHAPES: dict[str, tuple[str, ...]] = {model_type: family.benchmark_shapes for model_type, family in FAMILIES.items()}


def build_checkpoint(family: str, shape: str, out: Path, text_layers: int, vision_layers: int) -> Path:
    """A random-initialised checkpoint of ``family`` at ``shape`` written to ``out``."""
    from testbed.tiny import WIDE_BUILDERS, build_tiny_checkpoint

    if shape not in SHAPES[family]:
        raise ValueError(f"--shape {shape} is not one of {family}'s: {', '.join(SHAPES[family])}")
    if shape == "tiny":
        return build_tiny_checkpoint(out, family=family)
    model, processor = WIDE_BUILDERS[family](shape, text_layers, vision_layers)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
