"""A tiny Qwen2.5-VL: Qwen2.5-VL's structure (14-pixel patches merged 2 x 2 into 28-pixel tokens, a windowed vision
tower, M-RoPE, no query/key norms, CLIP's mean/std) at the Qwen3-VL tiny model's size, with the same tokenizers."""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from testbed.vocabulary import CHAT_TEMPLATE, TINY_TEXT, VOCAB_SIZE, build_tokenizer, vision_token_ids

TOKEN_PIXELS = 28  # patch 14 x merge 2
CLIP_NORMALISATION = {
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}


def build_qwen2_5_vl(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int, chat_template: str
) -> tuple[Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor]:
    """The model (random weights) and its processor; text hidden 64, 4 / 2 heads, vision 2 layers of 32."""
    token_id = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": vocab_size,
        **TINY_TEXT,
        "num_hidden_layers": num_layers,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
        "pad_token_id": token_id("<|endoftext|>"),
        "bos_token_id": token_id("<|endoftext|>"),
        "eos_token_id": token_id("<|im_end|>"),
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 2 * TOKEN_PIXELS,
        "fullatt_block_indexes": [1],
        "out_hidden_size": 64,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=False, **vision_token_ids(tokenizer)
    )
    size = {"shortest_edge": TOKEN_PIXELS**2, "longest_edge": TOKEN_PIXELS**2 * 64}
    geometry = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2, "size": size, **CLIP_NORMALISATION}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**geometry),
        chat_template=chat_template,
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval(), processor


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, None)``: Qwen2.5-VL's tower has no learned position embedding."""

    tokenizer = build_tokenizer(kind)
    model, processor = build_qwen2_5_vl(tokenizer, num_layers, VOCAB_SIZE, CHAT_TEMPLATE)
    return model, processor, tokenizer, None


def build_wide(shape: str, text_layers: int, vision_layers: int) -> tuple:
    """``(model, processor)`` at Qwen2.5-VL-7B's widths (``7b-wide``), random, with ``text_layers`` decoder and
    ``vision_layers`` vision layers (``benchmarks.shapes``)."""
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
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor.image_processor.size = {"shortest_edge": TOKEN_PIXELS**2, "longest_edge": TOKEN_PIXELS**2 * 4096}
    return model, processor
