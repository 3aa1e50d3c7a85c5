"""Build a tiny, randomly initialised checkpoint of a supported model family on disk.

Tests and the demo need a real checkpoint folder that loads through the same ``from_pretrained`` path a
user's checkpoint takes, without a hub download. The result is about 1 MB and is built in well under a second.

Usage: ``python -m testbed.tiny OUT_DIR [--family qwen3_vl|qwen3_vl_moe|qwen2_5_vl|llava] [--layers 4] [--seed 0]
[--tokenizer bytes|words|qwen]``. ``--family`` takes the config's ``model_type``: Qwen3-VL (the default), Qwen3-VL
mixture-of-experts (:mod:`testbed.tiny_qwen3_moe`), Qwen2.5-VL (:mod:`testbed.tiny_qwen2_5`) or LLaVA-1.5 in the
llava-hf format (:mod:`testbed.tiny_llava`).

``--tokenizer qwen`` puts the tiny architecture behind what a user's checkpoint has: the real Qwen
BPE vocabulary (151,936 ids, special tokens at their real ids), the released Qwen3-VL instruct chat
template's rendering and the released preprocessor settings (see :mod:`testbed.qwen_tokenizer`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

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
TINY_FAMILIES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "llava")
VOCAB_SIZE = 384  # room for either tokenizer: 256 bytes (+ up to 121 word merges) + 7 special tokens
WORD_MERGES = VOCAB_SIZE - len(SPECIAL_TOKENS)


def _word_corpus() -> list[str]:
    """The VSR prompt around every caption the synthetic generator can write, and the two answers."""
    from vsr_tasks.prompt import build_prompt
    from vsr_tasks.synthetic import CATEGORIES, RELATIONS, caption

    names = [c.name for c in CATEGORIES]
    texts = [build_prompt(caption(s, r, o)) for s in names for r in RELATIONS for o in names if s != o]
    return texts + ["True", "False", "user", "assistant", "system"]


def build_tokenizer(kind: str = "bytes") -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with the Qwen special tokens; every string round-trips, as in a real model.

    ``bytes``: one token per byte (DESIGN.md's recipe; prompts are ~180 tokens). ``words``: byte-level BPE with
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
        backend.train_from_iterator(_word_corpus(), trainer)
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


def build_config(
    tokenizer: PreTrainedTokenizerFast, num_layers: int = 4, vocab_size: int = VOCAB_SIZE
) -> Qwen3VLConfig:
    """Config as in DESIGN.md: text hidden 64, 4 heads / 2 KV heads, vision 2 layers hidden 32."""
    token_id = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 4096,
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
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
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


def build_tiny_checkpoint(
    out_dir: str | Path,
    num_layers: int = 4,
    seed: int = 0,
    tokenizer: str = "bytes",
    vision_position_std: float | None = None,
    family: str = "qwen3_vl",
) -> Path:
    """Write a loadable tiny checkpoint of ``family`` (model, tokenizer, processor) into ``out_dir``.

    ``vision_position_std``: re-draw the vision tower's position embedding with this standard deviation. At the
    config's 0.02 it is drowned by the patch embedding, so a random (frozen) tower hardly says where a patch is and
    the image's average feature carries almost nothing about left and right (a linear probe on it: 0.54 on the
    demo's left-of task); at 2.0, 0.84. A model trained from scratch then leaves chance at once (docs/DEMO.md).
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(TINY_FAMILIES)} (a config model_type), got {family!r}")
    if family != "qwen3_vl" and tokenizer == "qwen":
        raise ValueError("--tokenizer qwen is Qwen3-VL's released vocabulary and template; use bytes or words here")
    if family == "qwen2_5_vl" and vision_position_std is not None:
        raise ValueError("--vision_position_std: Qwen2.5-VL's vision tower has no learned position embedding")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = {"num_layers": num_layers, "seed": seed, "tokenizer": tokenizer}
    if family != "qwen3_vl":
        recipe["family"] = family
    if vision_position_std is not None:
        recipe["vision_position_std"] = vision_position_std
    kind = tokenizer
    torch.manual_seed(seed)
    if family == "llava":
        from testbed.tiny_llava import build_llava, build_llava_tokenizer

        tokenizer = build_llava_tokenizer(kind, _word_corpus(), VOCAB_SIZE)
        model, processor = build_llava(tokenizer, num_layers, VOCAB_SIZE)
        positions = model.model.vision_tower.embeddings.position_embedding.weight
    elif family == "qwen2_5_vl":
        from testbed.tiny_qwen2_5 import build_qwen2_5_vl

        tokenizer = build_tokenizer(kind)
        model, processor = build_qwen2_5_vl(tokenizer, num_layers, VOCAB_SIZE, CHAT_TEMPLATE)
        positions = None
    elif family == "qwen3_vl_moe":
        from testbed.tiny_qwen3_moe import build_qwen3_vl_moe

        tokenizer = build_tokenizer(kind)
        processor = build_processor(tokenizer)
        model = build_qwen3_vl_moe(tokenizer, num_layers, VOCAB_SIZE)
        positions = model.model.visual.pos_embed.weight
    else:
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
        positions = model.model.visual.pos_embed.weight
    if vision_position_std is not None:
        with torch.no_grad():
            positions.normal_(0.0, vision_position_std)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "tiny_recipe.json").write_text(json.dumps(recipe))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write the checkpoint into (created if missing)")
    parser.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        default="qwen3_vl",
        help="the config's model_type: qwen3_vl (default), qwen3_vl_moe (mixture-of-experts), qwen2_5_vl or llava "
        "(LLaVA-1.5, llava-hf format)",
    )
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="bytes",
        help="bytes: one token per byte (default); words: BPE with the VSR prompt's words as tokens; "
        "qwen: the real Qwen vocabulary, chat template and preprocessor settings (needs: pip install dashscope)",
    )
    parser.add_argument(
        "--vision_position_std",
        type=float,
        default=None,
        help="re-draw the vision tower's position embedding with this std (default: the config's 0.02); 2.0 lets a "
        "frozen random tower tell left from right (the demo)",
    )
    args = parser.parse_args(argv)
    if args.vision_position_std is not None and args.vision_position_std <= 0:
        parser.error(f"--vision_position_std must be positive, got {args.vision_position_std}")
    try:
        path = build_tiny_checkpoint(
            args.out_dir,
            num_layers=args.layers,
            seed=args.seed,
            tokenizer=args.tokenizer,
            vision_position_std=args.vision_position_std,
            family=args.family,
        )
    except ValueError as error:
        parser.error(str(error))
    except ModuleNotFoundError as error:
        raise SystemExit(str(error)) from None
    print(f"tiny {args.family} checkpoint written to {path}")


if __name__ == "__main__":
    main()
