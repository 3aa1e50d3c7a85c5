"""A tiny Qwen3-VL mixture-of-experts (Qwen3-VL-30B-A3B's and 235B-A22B's structure): the dense tiny Qwen3-VL's
vision tower, attention and tokenizers, with each decoder layer's MLP a sparse block of 4 experts, 2 routed per
token, except layer 0, which stays dense (``mlp_only_layers``), so both kinds of layer are exercised."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast, Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

from testbed.tiny_qwen3 import build_config, build_processor
from testbed.vocabulary import VOCAB_SIZE, build_tokenizer

EXPERTS, ROUTED = 4, 2


def build_qwen3_vl_moe_config(tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int) -> Qwen3VLMoeConfig:
    """The dense tiny config (``testbed.tiny_qwen3.build_config``) as a MoE config: the same sizes, sparse MLPs."""
    dense = build_config(tokenizer, num_layers=num_layers, vocab_size=vocab_size).to_dict()
    text = {key: value for key, value in dense["text_config"].items() if key not in ("model_type", "architectures")}
    text.update(num_experts=EXPERTS, num_experts_per_tok=ROUTED, moe_intermediate_size=64, decoder_sparse_step=1,
                mlp_only_layers=[0], norm_topk_prob=True)  # fmt: skip
    vision = {key: value for key, value in dense["vision_config"].items() if key not in ("model_type", "architectures")}
    return Qwen3VLMoeConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=dense["image_token_id"],
        video_token_id=dense["video_token_id"],
        vision_start_token_id=dense["vision_start_token_id"],
        vision_end_token_id=dense["vision_end_token_id"],
        tie_word_embeddings=False,
    )


def build_qwen3_vl_moe(
    tokenizer: PreTrainedTokenizerFast, num_layers: int, vocab_size: int
) -> Qwen3VLMoeForConditionalGeneration:
    return Qwen3VLMoeForConditionalGeneration(build_qwen3_vl_moe_config(tokenizer, num_layers, vocab_size)).eval()


def build(kind: str, num_layers: int, seed: int) -> tuple:
    """``(model, processor, tokenizer, vision position embedding)`` (the caller seeded torch)."""
    tokenizer = build_tokenizer(kind)
    processor = build_processor(tokenizer)
    model = build_qwen3_vl_moe(tokenizer, num_layers, VOCAB_SIZE)
    return model, processor, tokenizer, model.model.visual.pos_embed.weight
