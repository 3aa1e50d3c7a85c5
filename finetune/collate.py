"""Training sequences: the evaluation prompt plus the answer, processed, with labels on the answer only.

The user turn is built exactly as an evaluation of a VSR document builds it
(``models.qwen3vl.Qwen3VL.prepare_batch``: image first, the ``vsr_tasks`` prompt, no
system turn), so the model is trained on the text it is later asked. The loss covers the answer
tokens and the closing ``<|im_end|>``; everything else is -100.

The label mask is found on the PROCESSED ``input_ids``, after the processor has
expanded ``<|image_pad|>`` into one token per merged visual patch. Counting the
prompt's length on the text alone (as an earlier port did) misses those
hundreds of tokens and trains on image pads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from finetune.data import Example
from vsr_tasks.prompt import answer_text, build_prompt

IGNORE_INDEX = -100
ASSISTANT_HEADER = "<|im_start|>assistant\n"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"


class TemplateError(ValueError):
    """The checkpoint's chat template or tokenizer does not produce the layout training relies on."""


def user_messages(caption: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(caption)}]}]


def prompt_text(processor: Any, caption: str) -> str:
    """What evaluation feeds the model: one user turn and the assistant header."""
    return processor.apply_chat_template(user_messages(caption), tokenize=False, add_generation_prompt=True)


def training_text(processor: Any, caption: str, label: int) -> str:
    """The evaluation prompt followed by the answer turn, rendered by the checkpoint's chat template."""
    messages = user_messages(caption) + [
        {"role": "assistant", "content": [{"type": "text", "text": answer_text(label)}]}
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    prompt = prompt_text(processor, caption)
    if not text.startswith(prompt):
        raise TemplateError(
            "the chat template renders the answer turn so that it does not start with the evaluation prompt "
            f"(prompt ends {prompt[-40:]!r}, training text continues {text[len(prompt) - 40 : len(prompt) + 40]!r})"
        )
    return text


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the label mask looks for."""

    turn_start: int
    turn_end: int
    header: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialIds:
        ids = {}
        for token in (TURN_START, TURN_END):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise TemplateError(f"the tokenizer has no {token} token; is --model_id a Qwen3-VL checkpoint?")
            ids[token] = token_id
        header = tuple(tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"])
        return cls(turn_start=ids[TURN_START], turn_end=ids[TURN_END], header=header)


def answer_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: SpecialIds) -> torch.Tensor:
    """Labels for right-padded processed ids: the tokens after the last assistant header up to and including
    the first ``<|im_end|>``; -100 elsewhere (prompt, image pads, padding, the template's trailing newline)."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    header = torch.tensor(special.header, dtype=input_ids.dtype)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row, : int(attention_mask[row].sum())]
        starts = (ids == special.turn_start).nonzero().flatten()
        if len(starts) == 0:
            raise TemplateError(f"sequence {row} has no {TURN_START}: cannot find the answer turn")
        header_start = int(starts[-1])
        answer_start = header_start + len(special.header)
        if not torch.equal(ids[header_start:answer_start], header):
            raise TemplateError(f"sequence {row}: the last turn does not start with {ASSISTANT_HEADER!r}")
        ends = (ids[answer_start:] == special.turn_end).nonzero().flatten()
        if len(ends) == 0:
            raise TemplateError(f"sequence {row}: the answer turn is not closed by {TURN_END}")
        answer_end = answer_start + int(ends[0]) + 1  # the end-of-turn token is trained on too
        labels[row, answer_start:answer_end] = ids[answer_start:answer_end]
    return labels


class Collator:
    """Turns (example, weight) pairs into a processed, labelled, right-padded batch.

    The weight is 1 for a real example and 0 for a filler that only keeps
    processes in step (see ``finetune.plan``).
    """

    def __init__(self, processor: Any, augment: Any = None) -> None:
        """``augment(image, row) -> image``: the training rows' augmentation (``finetune.augment``); None for held-out."""
        self.processor = processor
        self.special = SpecialIds.from_tokenizer(processor.tokenizer)
        self.augment = augment

    def __call__(self, items: list[tuple[Example, float]]) -> dict[str, Any]:
        examples = [example for example, _ in items]
        texts = [training_text(self.processor, ex.caption, ex.label) for ex in examples]
        images = [load_rgb(ex.image) for ex in examples]
        if self.augment is not None:
            images = [self.augment(image, ex.index) for image, ex in zip(images, examples)]
        batch = self.processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt")
        labels = answer_labels(batch["input_ids"], batch["attention_mask"], self.special)
        for row, example in enumerate(examples):
            decoded = self.processor.tokenizer.decode(labels[row][labels[row] != IGNORE_INDEX][:-1])
            if decoded.strip() != answer_text(example.label):
                raise TemplateError(
                    f"row {example.index}: the labelled tokens decode to {decoded!r}, not {answer_text(example.label)!r}"
                )
        return {
            **dict(batch),
            "labels": labels,
            "weights": torch.tensor([weight for _, weight in items], dtype=torch.float32),
            "indices": torch.tensor([ex.index for ex in examples], dtype=torch.long),
        }


def load_rgb(path: Any) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
