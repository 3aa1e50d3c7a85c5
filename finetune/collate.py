"""Training sequences: the evaluation prompt plus the answer, processed, with labels on the answer only.

The user turn is built exactly as an evaluation of a VSR document builds it
(``models.engine.Engine.prepare``: image first, the ``vsr_tasks`` prompt, no
system turn), so the model is trained on the text it is later asked. The answer
turn is whatever the checkpoint's chat template renders after that prompt (ChatML's
``True<|im_end|>\n`` for Qwen, ``ASSISTANT: True`` for LLaVA); a template that does
not close the turn (llava-hf's) gets the tokenizer's end-of-sequence token, which is
what generation stops on. The loss covers the answer's tokens up to and including
that end token; everything else (the prompt, every image token, the template's
trailing newline, padding) is -100.

The answer's tokens are counted on the text and placed at the end of the PROCESSED
row, after the processor has expanded the image placeholder into one token per visual
patch. Counting the prompt's length on the text alone (as an earlier port did) misses
those hundreds of tokens and trains on image pads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from families.turns import without_template_bos
from finetune.data import Example
from local_tasks.images import open_rgb
from vsr_tasks.prompt import answer_text, build_prompt

IGNORE_INDEX = -100


class TemplateError(ValueError):
    """The checkpoint's chat template or tokenizer does not produce the layout training relies on."""


def user_messages(caption: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(caption)}]}]


def prompt_text(processor: Any, caption: str) -> str:
    """What evaluation feeds the model: one user turn and the template's generation prompt."""
    rendered = processor.apply_chat_template(user_messages(caption), tokenize=False, add_generation_prompt=True)
    return without_template_bos(processor, rendered)


def training_text(processor: Any, caption: str, label: int) -> str:
    """The evaluation prompt followed by the answer turn as the checkpoint's chat template renders it, closed by
    the end-of-sequence token where the template leaves the turn open."""
    messages = user_messages(caption) + [
        {"role": "assistant", "content": [{"type": "text", "text": answer_text(label)}]}
    ]
    text = without_template_bos(processor, processor.apply_chat_template(messages, tokenize=False))
    prompt = prompt_text(processor, caption)
    if not text.startswith(prompt):
        raise TemplateError(
            "the chat template renders the answer turn so that it does not start with the evaluation prompt "
            f"(prompt ends {prompt[-40:]!r}, training text continues {text[len(prompt) - 40 : len(prompt) + 40]!r})"
        )
    answer = text[len(prompt) :]
    end = processor.tokenizer.eos_token
    if end is None:
        raise TemplateError("the tokenizer has no end-of-sequence token: an answer could not be taught to stop")
    if end not in answer:
        answer = answer.rstrip() + end
    return prompt + answer


@dataclass(frozen=True)
class AnswerSpan:
    """Where one example's answer sits, counted from the end of its tokens: ``tokens`` from the answer's first
    token to the end, of which the first ``trained`` (through the end-of-sequence token) carry labels."""

    tokens: int
    trained: int


def answer_span(processor: Any, caption: str, label: int) -> AnswerSpan:
    """The answer's tokens, from the tokenized prompt and training text (the image placeholder unexpanded)."""
    tokenizer = processor.tokenizer
    prompt_ids = tokenizer(prompt_text(processor, caption))["input_ids"]
    full_ids = tokenizer(training_text(processor, caption, label))["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise TemplateError("the prompt's tokens change when the answer follows it: the answer cannot be located")
    answer = full_ids[len(prompt_ids) :]
    ends = [index for index, token in enumerate(answer) if token == tokenizer.eos_token_id]
    if not ends:
        raise TemplateError(f"the answer turn has no {tokenizer.eos_token} token")
    return AnswerSpan(tokens=len(answer), trained=ends[0] + 1)


def answer_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, spans: list[AnswerSpan]) -> torch.Tensor:
    """Labels for right-padded processed ids: each row's answer, located from the end of its real tokens."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, span in enumerate(spans):
        length = int(attention_mask[row].sum())
        start = length - span.tokens
        if start <= 0:
            raise TemplateError(f"sequence {row}: {span.tokens} answer tokens in a sequence of {length}")
        labels[row, start : start + span.trained] = input_ids[row, start : start + span.trained]
    return labels


class Collator:
    """Turns (example, weight) pairs into a processed, labelled, right-padded batch.

    The weight is 1 for a real example and 0 for a filler that only keeps
    processes in step (see ``finetune.plan``).
    """

    def __init__(self, processor: Any, augment: Any = None) -> None:
        """``augment(image, row) -> image``: the training rows' augmentation (``finetune.augment``); None for held-out."""
        self.processor = processor
        self.augment = augment

    def __call__(self, items: list[tuple[Example, float]]) -> dict[str, Any]:
        examples = [example for example, _ in items]
        texts = [training_text(self.processor, ex.caption, ex.label) for ex in examples]
        images = [load_rgb(ex.image) for ex in examples]
        if self.augment is not None:
            images = [self.augment(image, ex.index) for image, ex in zip(images, examples)]
        batch = self.processor(  # one image per text, as a list per text (Gemma-3 groups a flat list wrongly)
            text=texts, images=[[image] for image in images], padding=True, padding_side="right", return_tensors="pt"
        )
        spans = [answer_span(self.processor, ex.caption, ex.label) for ex in examples]
        labels = answer_labels(batch["input_ids"], batch["attention_mask"], spans)
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
    return open_rgb(path)
