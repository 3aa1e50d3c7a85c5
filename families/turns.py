"""One user turn: where a document's images go (first, the default, or at their placeholders) and its rendering
through the checkpoint's chat template.

Tasks write image placeholders into their prompts: ``<image>`` (LLaVA style, one per image, in order)
or ``<image k>`` (MMMU style, 1-based, possibly out of order). With ``interleave_visuals=false`` every
image goes before the text and the placeholders are removed, as in lmms-eval's own ``qwen3_vl``; with
``true`` each image goes where its placeholder stands. The chat template renders the content parts
returned here, and the processor takes the images in the same (prompt) order, so each
``<|image_pad|>`` run, each image grid, the attention log's maps and VEA's per-image maps all follow
the order in which the images appear in the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"<image(?: (\d+))?>")
IMAGE_PART = {"type": "image"}


class PlaceholderError(ValueError):
    """A placeholder names an image the document does not have."""


@dataclass
class UserTurn:
    """The content parts of one user turn and the images in the order the parts use them."""

    content: list[dict]
    images: list[Any]


def images_first(context: str, images: list[Any]) -> UserTurn:
    """Every image before the text; placeholders (``<image>``, ``<image k>``) removed."""
    text = PLACEHOLDER.sub("", context).strip()
    return UserTurn(content=[dict(IMAGE_PART) for _ in images] + [{"type": "text", "text": text}], images=list(images))


def interleaved(context: str, images: list[Any], where: str) -> UserTurn:
    """Each image at its placeholder; images no placeholder names go first.

    ``<image>`` placeholders take the images in order (the n-th takes image n); ``<image k>`` takes image k.
    An image named twice is shown once, at its first placeholder; a later mention stays as text. A
    placeholder beyond the document's images raises :class:`PlaceholderError` naming ``where`` (task, doc).
    """
    parts: list[dict] = []
    order: list[int] = []
    position, bare = 0, 0

    def add_text(value: str) -> None:
        if not value:
            return
        if parts and parts[-1]["type"] == "text":
            parts[-1] = {"type": "text", "text": parts[-1]["text"] + value}
        else:
            parts.append({"type": "text", "text": value})

    for match in PLACEHOLDER.finditer(context):
        add_text(context[position : match.start()])
        position = match.end()
        if match.group(1) is None:
            index, bare = bare, bare + 1
        else:
            index = int(match.group(1)) - 1
        if not 0 <= index < len(images):
            raise PlaceholderError(
                f"{where}: the prompt has the placeholder {match.group(0)!r} but the document has "
                f"{len(images)} image(s)"
            )
        if index in order:
            add_text(match.group(0))
            continue
        order.append(index)
        parts.append(dict(IMAGE_PART))
    add_text(context[position:])
    unplaced = [index for index in range(len(images)) if index not in order]
    content = [dict(IMAGE_PART) for _ in unplaced] + parts
    if content and content[0]["type"] == "text":
        content[0] = {"type": "text", "text": content[0]["text"].lstrip()}
    if content and content[-1]["type"] == "text":
        content[-1] = {"type": "text", "text": content[-1]["text"].rstrip()}
    content = [part for part in content if part["type"] != "text" or part["text"]]
    return UserTurn(content=content, images=[images[index] for index in unplaced + order])


def render_user_turn(processor: Any, content: list[dict], system_prompt: str | None = None) -> str:
    """The prompt text: an optional system turn, one user turn of ``content`` parts, the generation prompt."""
    messages = [{"role": "user", "content": content}]
    if system_prompt:  # as content parts: templates that render parts only (llava-hf's) would drop a plain string
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    return without_template_bos(
        processor, processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )


def without_template_bos(processor: Any, text: str) -> str:
    """``text`` without the beginning-of-sequence token its chat template wrote, when the tokenizer adds one itself.

    Why: Gemma's and Llama-3's templates start with ``<bos>`` / ``<|begin_of_text|>`` and their tokenizers prepend it
    again, so a rendered prompt passed to the processor would start with two (transformers' own
    ``apply_chat_template(tokenize=True)`` avoids that by not adding special tokens). One is what the models were
    trained on.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return text
    if tokenizer("", add_special_tokens=True)["input_ids"][:1] != [tokenizer.bos_token_id]:
        return text
    return text[len(bos) :]
