"""The tiny checkpoints' vocabularies: byte-level tokenizers carrying the Qwen special tokens, and the reduced chat
template of the released Qwen3-VL instruct models (shared by the Qwen3-VL, Qwen3-VL MoE and Qwen2.5-VL builders)."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat template of the released Qwen3-VL instruct models, reduced to what
# single-turn and multi-turn evaluation needs (text, image and video parts).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}"
    "{{- content['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


TOKENIZERS = ("bytes", "words", "qwen")


def vision_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The Qwen configs' ids of the image, video and vision-bracket tokens, from the tokenizer."""
    token_id = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": token_id("<|image_pad|>"),
        "video_token_id": token_id("<|video_pad|>"),
        "vision_start_token_id": token_id("<|vision_start|>"),
        "vision_end_token_id": token_id("<|vision_end|>"),
    }


# every family's tiny language model: text hidden 64, 4 heads / 2 key-value heads, head_dim 16
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
VOCAB_SIZE = 384  # room for either tokenizer: 256 bytes (+ up to 121 word merges) + 7 special tokens
WORD_MERGES = VOCAB_SIZE - len(SPECIAL_TOKENS)


def word_corpus() -> list[str]:
    """The VSR prompt around every caption the synthetic generator can write, and the two answers."""
    from vsr_tasks.prompt import build_prompt
    from vsr_tasks.synthetic import CATEGORIES, RELATIONS, caption

    names = [c.name for c in CATEGORIES]
    texts = [build_prompt(caption(s, r, o)) for s in names for r in RELATIONS for o in names if s != o]
    return texts + ["True", "False", "user", "assistant", "system"]


def build_tokenizer(kind: str = "bytes") -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with the Qwen special tokens; every string round-trips, as in a real model.

    ``bytes``: one token per byte (the test bed's default; prompts are ~180 tokens). ``words``: byte-level BPE with
    merges learned from the VSR prompt and the synthetic captions, so those words are single tokens as in a
    real Qwen tokenizer (prompts are ~50 tokens: the demo trains ~1.5x faster, and the image is a larger
    share of what the model attends to). Both are deterministic.
    """
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    if kind == "qwen":
        from testbed.qwen_tokenizer import build_qwen_tokenizer

        return build_qwen_tokenizer()
    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    if kind == "bytes":
        vocab = {symbol: index for index, symbol in enumerate(sorted(byte_alphabet))}
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=WORD_MERGES, initial_alphabet=byte_alphabet, special_tokens=[], show_progress=False
        )
        backend.train_from_iterator(word_corpus(), trainer)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def bos_tokenizer(
    kind: str, special_tokens: list[str], vocab_size: int, bos: str, **named: str | dict[str, str]
) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer that prepends ``bos`` to every text, as Llama's and Gemma's do: ``bytes`` one token per
    byte, ``words`` byte-level BPE trained on :func:`word_corpus`. ``special_tokens`` are added after the bytes;
    ``named``: the tokenizer's ``eos_token``, ``pad_token``, ``unk_token`` and ``extra_special_tokens``."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if kind == "bytes":
        backend = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(sorted(alphabet))}, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(special_tokens),
            initial_alphabet=alphabet,
            special_tokens=[],
            show_progress=False,
        )
        backend.train_from_iterator(word_corpus(), trainer)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(special_tokens)
    bos_id = backend.token_to_id(bos)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, **named)
