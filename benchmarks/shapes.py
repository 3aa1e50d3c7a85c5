"""Random-initialised checkpoints at a released model's widths, for the cost benchmarks (nothing downloaded).

Per family, ``tiny`` (the test checkpoint) and a wide shape with the released model's widths but few layers, so that
every model of a benchmark fits in 24 GB at once (they share one copy of the weights):

| family | shape | widths of | text | vision |
|---|---|---|---|---|
| ``qwen3_vl`` | ``2b-wide`` | Qwen3-VL-2B | hidden 2048, 16 / 8 heads, head_dim 128, vocab 151,936, tied | hidden 1024, deepstack [5, 11, 17] |
| ``qwen3_vl`` | ``7b-wide`` | Qwen3-VL-8B | hidden 4096, 32 / 8 heads, head_dim 128, vocab 151,936 | hidden 1152, deepstack [8, 16, 24] |
| ``qwen2_5_vl`` | ``7b-wide`` | Qwen2.5-VL-7B | hidden 3584, 28 / 4 heads, vocab 152,064 | hidden 1280, window 112 |
| ``llava`` | ``7b-wide`` | LLaVA-1.5-7B | Llama-2-7B: hidden 4096, 32 / 32 heads, vocab 32,064 | CLIP ViT-L/14 at 336 px |
| ``llava_next`` | ``7b-wide`` | LLaVA-1.6-Vicuna-7B | as LLaVA-1.5-7B | CLIP ViT-L/14, 336 px tiles, the released five canvases |
| ``gemma3`` | ``4b-wide`` | Gemma-3-4B (the family has no 7B; VEA's model) | hidden 2560, 8 / 4 heads, head_dim 256, vocab 262,208, tied, every 6th layer global, the others sliding (1,024): measure with ``--text-layers 6`` or more | SigLIP at 896 px, hidden 1152, 256 tokens |

``--text-layers`` and ``--vision-layers`` set the depths (default 8 and 18, as the 2B measurements).
"""

from __future__ import annotations

from pathlib import Path

import torch

SHAPES = {
    "qwen3_vl": ("tiny", "2b-wide", "7b-wide"),
    "qwen3_vl_moe": ("tiny",),
    "qwen2_5_vl": ("tiny", "7b-wide"),
    "llava": ("tiny", "7b-wide"),
    "llava_next": ("tiny", "7b-wide"),
    "gemma3": ("tiny", "4b-wide"),
}


def build_checkpoint(family: str, shape: str, out: Path, text_layers: int, vision_layers: int) -> Path:
    """A random-initialised checkpoint of ``family`` at ``shape`` written to ``out``."""
    from testbed.tiny import build_tiny_checkpoint

    if shape not in SHAPES[family]:
        raise ValueError(f"--shape {shape} is not one of {family}'s: {', '.join(SHAPES[family])}")
    if shape == "tiny":
        return build_tiny_checkpoint(out, family=family)
    builders = {
        "qwen3_vl": _qwen3_vl,
        "qwen2_5_vl": _qwen2_5_vl,
        "llava": _llava,
        "llava_next": _llava_next,
        "gemma3": _gemma3,
    }
    model, processor = builders[family](shape, text_layers, vision_layers)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _qwen3_vl(shape: str, text_layers: int, vision_layers: int):
    from transformers import Qwen3VLForConditionalGeneration

    from testbed.tiny_qwen3 import build_config, build_processor
    from testbed.vocabulary import build_tokenizer

    tokenizer = build_tokenizer("bytes")
    config = build_config(tokenizer, num_layers=text_layers)
    text, vision = config.text_config, config.vision_config
    eight = shape == "7b-wide"
    text.update(
        {
            "vocab_size": 151936,
            "hidden_size": 4096 if eight else 2048,
            "intermediate_size": 12288 if eight else 6144,
            "num_attention_heads": 32 if eight else 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 262144,
        }
    )
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [24, 20, 20], "rope_theta": 5000000.0}
    deepstack = (8, 16, 24) if eight else (5, 11, 17)
    vision.update(
        {
            "depth": vision_layers,
            "hidden_size": 1152 if eight else 1024,
            "intermediate_size": 4304 if eight else 4096,
            "num_heads": 16,
            "out_hidden_size": text.hidden_size,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [i for i in deepstack if i < vision_layers],
        }
    )
    config.tie_word_embeddings = text.tie_word_embeddings = not eight
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    processor = build_processor(tokenizer)
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": 32 * 32 * 4096}
    return model, processor


def _qwen2_5_vl(shape: str, text_layers: int, vision_layers: int):
    from testbed.tiny_qwen2_5 import TOKEN_PIXELS, build_qwen2_5_vl
    from testbed.vocabulary import CHAT_TEMPLATE, build_tokenizer

    tokenizer = build_tokenizer("bytes")
    model, processor = build_qwen2_5_vl(tokenizer, text_layers, 152064, CHAT_TEMPLATE)
    config = model.config
    text, vision = config.text_config, config.vision_config
    text.update(
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
        }
    )
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}
    vision.update(
        {
            "depth": vision_layers,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "window_size": 112,
            "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < vision_layers],
            "out_hidden_size": 3584,
        }
    )
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor.image_processor.size = {"shortest_edge": TOKEN_PIXELS**2, "longest_edge": TOKEN_PIXELS**2 * 4096}
    return model, processor


def _llava(shape: str, text_layers: int, vision_layers: int):
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration

    from testbed.tiny_llava import CLIP_MEAN, CLIP_STD, build_llava, build_llava_tokenizer

    tokenizer = build_llava_tokenizer("bytes", 384)
    model, processor = build_llava(tokenizer, text_layers, 32064)
    config = model.config
    config.text_config.update(LLAMA_2_7B)
    config.text_config.head_dim = 128
    config.vision_config.update({**CLIP_L_336, "num_hidden_layers": vision_layers})
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor.image_processor = CLIPImageProcessor(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        do_center_crop=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return model, processor


LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32}
CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "image_size": 336,
              "patch_size": 14, "projection_dim": 768}  # fmt: skip


def _llava_next(shape: str, text_layers: int, vision_layers: int):
    from transformers import LlavaNextForConditionalGeneration

    from testbed.tiny_llava import build_llava_tokenizer
    from testbed.tiny_llava_next import CANVASES, build_llava_next

    tokenizer = build_llava_tokenizer("bytes", 384)
    model, processor = build_llava_next(tokenizer, text_layers, 32064)
    config = model.config
    config.text_config.update(LLAMA_2_7B)
    config.text_config.head_dim = 128
    config.vision_config.update({**CLIP_L_336, "num_hidden_layers": vision_layers})
    pinpoints = [[336 * down, 336 * across] for down, across in CANVASES]
    config.image_grid_pinpoints = pinpoints
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": 336}
    image_processor.crop_size = {"height": 336, "width": 336}
    image_processor.image_grid_pinpoints = pinpoints
    return model, processor


def _gemma3(shape: str, text_layers: int, vision_layers: int):
    from transformers import Gemma3ForConditionalGeneration

    from testbed.tiny_gemma3 import build_gemma3, build_gemma3_tokenizer

    tokenizer = build_gemma3_tokenizer("bytes", 384)
    model, processor = build_gemma3(tokenizer, text_layers, 262208)
    config = model.config
    config.text_config.update(
        {"hidden_size": 2560, "intermediate_size": 10240, "num_attention_heads": 8, "num_key_value_heads": 4,
         "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 1024,
         "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(text_layers)]}
    )  # fmt: skip
    config.vision_config.update(
        {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": vision_layers,
         "image_size": 896, "patch_size": 14}
    )  # fmt: skip
    config.mm_tokens_per_image = 256
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # zeros at initialisation: every image would look the same
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.02)
    processor.image_processor.size = {"height": 896, "width": 896}
    processor.image_seq_length = 256
    return model, processor
