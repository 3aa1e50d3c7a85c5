"""A tiny LLaVA-NeXT (LLaVA-1.6) in the llava-hf format: anyres tiles, a CLIP tower, a projector, a Llama decoder.

The structure of ``llava-hf/llava-v1.6-vicuna-7b-hf`` at test size: CLIP with ``vision_feature_layer=-2`` and
``vision_feature_select_strategy="default"``, a base tile plus high-resolution tiles chosen among
``image_grid_pinpoints`` (the released five canvases, 1 x 2, 2 x 1, 2 x 2, 1 x 3 and 3 x 1 tiles), the learned
``image_newline`` closing each high-resolution row, the CLIP mean / std, and the Vicuna template's rendering (as
LLaVA-1.5's: ``USER: <image>\\n... ASSISTANT:``). The only change of scale is the tile: 112 pixels (8 x 8 = 64 tokens)
instead of 336 (24 x 24 = 576), the canvases scaled with it, so that the tests run in seconds; the layout and its
arithmetic are the same. The tokenizer is LLaVA-1.5's tiny one (``<s>`` prepended, ``</s>`` ends an answer).
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
)

from testbed.tiny_llava import CLIP_MEAN, CLIP_STD, LLAVA_CHAT_TEMPLATE, PATCH, build_llava_tokenizer
from testbed.vocabulary import TINY_TEXT, VOCAB_SIZE

TILE = 112  # the released checkpoints: 336
# the released canvases, (height, width) in tiles: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
PINPOINTS = [[TILE * down, TILE * across] for down, across in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]


def build_llava_next(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """The model (random weights) and its processor; text as the other tiny models (hidden 64, 4 / 2 heads)."""
    text = LlamaConfig(
        vocab_size=vocab_size,
        **TINY_TEXT,
        num_hidden_layers=num_layers,
        head_dim=16,
        rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TILE,
        patch_size=PATCH,
        projection_dim=32,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    model = LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():  # as the released models learned it: a token unlike the image features around it
        model.model.image_newline.normal_(0.0, 1.0)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": TILE},
        crop_size={"height": TILE, "width": TILE},
        image_grid_pinpoints=PINPOINTS,
        do_center_crop=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)`` (the caller seeded torch)."""
    tokenizer = build_llava_tokenizer(kind, VOCAB_SIZE)
    model, processor = build_llava_next(tokenizer, num_layers, VOCAB_SIZE)
    return model, processor, tokenizer, model.model.vision_tower.embeddings.position_embedding.weight
