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
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
)

from testbed.tiny_llava import (
    CLIP_MEAN,
    CLIP_STD,
    build_llava_tokenizer,
    llava_configs,
    llava_processor_settings,
    set_7b_widths,
)
from testbed.vocabulary import VOCAB_SIZE

TILE = 112  # the released checkpoints: 336
# the released checkpoints' canvases in tiles (down, across): [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
CANVASES = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))
PINPOINTS = [[TILE * down, TILE * across] for down, across in CANVASES]


def build_llava_next(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """The model (random weights) and its processor; text and tower as LLaVA-1.5's tiny ones."""
    config = LlavaNextConfig(**llava_configs(tokenizer, num_layers, vocab_size, TILE), image_grid_pinpoints=PINPOINTS)
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
    processor = LlavaNextProcessor(image_processor=image_processor, **llava_processor_settings(tokenizer))
    return model, processor


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)`` (the caller seeded torch)."""
    tokenizer = build_llava_tokenizer(kind, VOCAB_SIZE)
    model, processor = build_llava_next(tokenizer, num_layers, VOCAB_SIZE)
    return model, processor, tokenizer, model.model.vision_tower.embeddings.position_embedding.weight


def build_wide(shape: str, text_layers: int, vision_layers: int) -> tuple:
    """``(model, processor)`` at LLaVA-1.6-Vicuna-7B's widths (``7b-wide``: as LLaVA-1.5-7B, 336 px tiles, the
    released five canvases), random, with ``text_layers`` decoder and ``vision_layers`` vision layers
    (``benchmarks.shapes``)."""
    tokenizer = build_llava_tokenizer("bytes", 384)
    model, processor = build_llava_next(tokenizer, text_layers, 32064)
    config = model.config
    set_7b_widths(config, vision_layers)
    pinpoints = [[336 * down, 336 * across] for down, across in CANVASES]
    config.image_grid_pinpoints = pinpoints
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": 336}
    image_processor.crop_size = {"height": 336, "width": 336}
    image_processor.image_grid_pinpoints = pinpoints
    return model, processor
