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
