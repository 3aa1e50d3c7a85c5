"""A tiny Qwen3-VL (dense): text hidden 64, 4 heads / 2 KV heads, head_dim 16, a 2-layer vision tower of hidden 32,
16 px patches merged 2 x 2, ``q_norm`` / ``k_norm`` and deepstack, as the released models are built."""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from testbed.vocabulary import CHAT_TEMPLATE, TINY_TEXT, VOCAB_SIZE, build_tokenizer, vision_token_ids


def build_config(
    tokenizer: PreTrainedTokenizerFast, num_layers: int = 4, vocab_size: int = VOCAB_SIZE
) -> Qwen3VLConfig:
    """The tiny sizes (``testbed.vocabulary.TINY_TEXT``: text hidden 64, 4 heads / 2 KV heads), vision 2 layers of
    hidden 32, M-RoPE sections [4, 2, 2] for head_dim 16."""
    token_id = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": vocab_size,
        **TINY_TEXT,
        "num_hidden_layers": num_layers,
        "head_dim": 16,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        "pad_token_id": token_id("<|endoftext|>"),
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [1],
    }
    return Qwen3VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=False, **vision_token_ids(tokenizer)
    )


def build_processor(
    tokenizer: PreTrainedTokenizerFast,
    chat_template: str = CHAT_TEMPLATE,
    size: dict | None = None,
    video_size: dict | None = None,
) -> Qwen3VLProcessor:
    """Processor with Qwen3-VL's patch 16 / merge 2 geometry and (by default) a small pixel budget."""
    size = size or {"shortest_edge": 32 * 32, "longest_edge": 32 * 32 * 64}
    normalisation = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, size=size, **normalisation
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, size=video_size or size, **normalisation
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)``; ``kind`` ``qwen`` gives the released vocabulary,
    chat template and preprocessor settings."""
    tokenizer = build_tokenizer(kind)
    if kind == "qwen":
        from testbed.qwen_tokenizer import QWEN_VOCAB_SIZE, released_processor_settings

        config = build_config(tokenizer, num_layers=num_layers, vocab_size=QWEN_VOCAB_SIZE)
        config.tie_word_embeddings = config.text_config.tie_word_embeddings = True  # as the released 2B
        processor = build_processor(tokenizer, **released_processor_settings())
    else:
        config = build_config(tokenizer, num_layers=num_layers)
        processor = build_processor(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    return model, processor, tokenizer, model.model.visual.pos_embed.weight


def build_wide(shape: str, text_layers: int, vision_layers: int) -> tuple:
    """``(model, processor)`` at Qwen3-VL-2B's widths (``2b-wide``) or Qwen3-VL-8B's (``7b-wide``), random, with
    ``text_layers`` decoder and ``vision_layers`` vision layers (``benchmarks.shapes``)."""
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
