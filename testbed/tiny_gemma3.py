"""A tiny Gemma-3 (``Gemma3ForConditionalGeneration``): a SigLIP tower pooled to a fixed token grid, a Gemma decoder.

The structure of ``google/gemma-3-4b-it`` at test size: images resized to a square without keeping their aspect, mean
and std 0.5, patches average-pooled ``4 x 4`` into a square grid of tokens wrapped in ``<start_of_image>`` ...
``<end_of_image>``; image tokens attend to each other both ways; sliding-window layers beside global ones, each kind
with its own rotary base; ``q_norm`` / ``k_norm``; a query scale from ``query_pre_attn_scalar`` (here 24, not the head
size, so a method that assumed ``head_dim ** -0.5`` would be caught); the released chat template's rendering
(``<bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n``, a system turn folded into the first user
turn). Changes of scale: 224 px images in 7 px patches (32 x 32, pooled to 8 x 8 = 64 tokens of 28 px) instead of 896
px in 14 px patches (64 x 64 pooled to 16 x 16 = 256 tokens of 56 px); layers alternate sliding and global (the
released models: five sliding to one global); a window of :data:`SLIDING_WINDOW` positions instead of 1,024, shorter
than the test prompts, so that the last row's window really cuts the prompt in the tests. The tokenizer is
byte-level with Gemma's special tokens, prepends ``<bos>`` as Gemma's does, and ends an answer with
``<end_of_turn>``.
"""

from __future__ import annotations

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessor,
    Gemma3Processor,
    Gemma3TextConfig,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
)

from testbed.vocabulary import TINY_TEXT, VOCAB_SIZE, bos_tokenizer

GEMMA_SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
IMAGE_SIZE = 224  # the released checkpoints: 896
PATCH = 7  # 14
TOKENS_PER_SIDE = 8  # 16: the projector pools (IMAGE_SIZE / PATCH) / TOKENS_PER_SIDE = 4 patches a side either way
SLIDING_WINDOW = 96  # 1,024
# The released Gemma-3 instruct template's rendering: <bos>, a system message's text folded into the first user turn,
# each turn "<start_of_turn>ROLE\n" (the assistant is "model") with its parts trimmed, images as <start_of_image>.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- else -%}{%- set prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}{%- endif -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def build_gemma3_tokenizer(kind: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """``bytes`` or ``words`` (``testbed.vocabulary.bos_tokenizer``) with Gemma's special tokens; ``<bos>`` first."""
    return bos_tokenizer(
        kind,
        GEMMA_SPECIAL_TOKENS,
        vocab_size,
        bos="<bos>",
        eos_token="<end_of_turn>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )


def build_gemma3(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int
) -> tuple[Gemma3ForConditionalGeneration, Gemma3Processor]:
    """The model (random weights) and its processor; text as the other tiny models (hidden 64, 4 / 2 heads)."""
    token_id = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(
        vocab_size=vocab_size,
        **TINY_TEXT,
        num_hidden_layers=num_layers,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=SLIDING_WINDOW,
        layer_types=["full_attention" if index % 2 else "sliding_attention" for index in range(num_layers)],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=TOKENS_PER_SIDE**2,
        boi_token_index=token_id("<start_of_image>"),
        eoi_token_index=token_id("<end_of_image>"),
        image_token_index=token_id("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # initialised to zeros, which would make every image the same to the decoder
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.05)
    image_processor = Gemma3ImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=TOKENS_PER_SIDE**2,
    )
    return model, processor


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)`` (the caller seeded torch)."""
    tokenizer = build_gemma3_tokenizer(kind, VOCAB_SIZE)
    model, processor = build_gemma3(tokenizer, num_layers, VOCAB_SIZE)
    return model, processor, tokenizer, model.model.vision_tower.embeddings.position_embedding.weight


def build_wide(shape: str, text_layers: int, vision_layers: int) -> tuple:
    """``(model, processor)`` at Gemma-3-4B's widths (``4b-wide``: every 6th layer global, SigLIP at 896 px, 256
    tokens), random, with ``text_layers`` decoder and ``vision_layers`` vision layers (``benchmarks.shapes``)."""
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
