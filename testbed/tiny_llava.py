"""A tiny LLaVA-1.5 in the llava-hf format: a CLIP tower, a two-layer projector, a Llama decoder.

The structure of ``llava-hf/llava-1.5-7b-hf`` at test size: CLIP with ``vision_feature_layer=-2`` and
``vision_feature_select_strategy="default"`` (the class token dropped), the CLIP mean/std, a resize of the short side
and a centre crop, 14-pixel patches, and the llava-hf chat template (``USER: <image>\\n... ASSISTANT:``). The only
change of scale is the crop: 112 pixels (8 x 8 = 64 image tokens) instead of 336 (24 x 24 = 576), so that the
tests run in seconds; the layout and its arithmetic are the same. The tokenizer is byte-level with Llama's special
tokens (``<s>`` prepended to every text, ``</s>`` ends an answer, ``<pad>``, ``<image>``).
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from testbed.vocabulary import TINY_TEXT, VOCAB_SIZE, bos_tokenizer

LLAVA_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
CROP = 112  # the released checkpoints: 336
PATCH = 14
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# the wide shapes' widths (benchmarks.shapes), LLaVA-1.5-7B's and LLaVA-1.6-Vicuna-7B's alike
LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32}
CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "image_size": 336,
              "patch_size": 14, "projection_dim": 768}  # fmt: skip
# The chat template of llava-hf/llava-1.5-7b-hf: images first, then the text, each turn "ROLE: ".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_llava_tokenizer(kind: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """``bytes``: one token per byte; ``words``: byte-level BPE on the VSR prompt's words. Both prepend ``<s>``."""
    return bos_tokenizer(
        kind,
        LLAVA_SPECIAL_TOKENS,
        vocab_size,
        bos="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def llava_configs(tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int, image_size: int) -> dict:
    """The text and vision configs and the settings LLaVA-1.5 and LLaVA-NeXT share (llava-hf's): a tiny Llama (as
    the other tiny models: hidden 64, 4 / 2 heads) and a 2-layer CLIP tower of ``image_size`` pixels."""
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
        image_size=image_size,
        patch_size=PATCH,
        projection_dim=32,
    )
    return {
        "vision_config": vision,
        "text_config": text,
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
        "tie_word_embeddings": False,
    }


def llava_processor_settings(tokenizer: PreTrainedTokenizerFast) -> dict:
    """The processor settings LLaVA-1.5 and LLaVA-NeXT share: 14 px patches, the class token dropped, the template."""
    return {
        "tokenizer": tokenizer,
        "patch_size": PATCH,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
        "chat_template": LLAVA_CHAT_TEMPLATE,
    }


def build_llava(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The model (random weights) and its processor."""
    config = LlavaConfig(**llava_configs(tokenizer, num_layers, vocab_size, CROP))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": CROP},
        crop_size={"height": CROP, "width": CROP},
        do_center_crop=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaProcessor(image_processor=image_processor, **llava_processor_settings(tokenizer))
    return LlavaForConditionalGeneration(config).eval(), processor


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)`` (the caller seeded torch)."""

    tokenizer = build_llava_tokenizer(kind, VOCAB_SIZE)
    model, processor = build_llava(tokenizer, num_layers, VOCAB_SIZE)
    return model, processor, tokenizer, model.model.vision_tower.embeddings.position_embedding.weight


def set_7b_widths(config, vision_layers: int) -> None:
    """LLaVA-1.5-7B's widths on a LLaVA config (LLaVA-NeXT's 7B has the same): Llama-2-7B, CLIP ViT-L/14 at 336 px."""
    config.text_config.update(LLAMA_2_7B)
    config.text_config.head_dim = 128
    config.vision_config.update({**CLIP_L_336, "num_hidden_layers": vision_layers})


def build_wide(shape: str, text_layers: int, vision_layers: int) -> tuple:
    """``(model, processor)`` at LLaVA-1.5-7B's widths (``7b-wide``: Llama-2-7B, CLIP ViT-L/14 at 336 px), random,
    with ``text_layers`` decoder and ``vision_layers`` vision layers (``benchmarks.shapes``)."""
    tokenizer = build_llava_tokenizer("bytes", 384)
    model, processor = build_llava(tokenizer, text_layers, 32064)
    config = model.config
    set_7b_widths(config, vision_layers)
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
