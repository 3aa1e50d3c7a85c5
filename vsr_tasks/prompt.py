"""The one VSR prompt: evaluation and fine-tuning both import it from here.

The reference checkpoints were fine-tuned on exactly this text, so any change
to it changes every number we report.
"""

from __future__ import annotations

PROMPT_TEMPLATE = (
    "Look at the image and decide whether the statement is True or False.\n"
    "Statement: {caption}\n"
    "Answer with exactly one word: True or False."
)


def build_prompt(caption: str) -> str:
    """The user-turn text for one VSR caption (the image goes before it)."""
    return PROMPT_TEMPLATE.format(caption=caption)


def answer_text(label: int | bool) -> str:
    """The assistant answer a checkpoint is trained to give for a label."""
    return "True" if int(label) == 1 else "False"
