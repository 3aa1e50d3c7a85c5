"""AdaptVis' questions for WhatsUp (its ``prompts/*_with_answer_*_options.jsonl``), built from each caption.

Two objects: "Where is the X in relation to the Y? Answer with left, right, on or under." One object: "Where is the X
in the photo? Answer with left, right, top or bottom." The options are the subset's, in AdaptVis' order. AdaptVis
wraps the question in LLaVA-1.5's ``USER: ... ASSISTANT:`` turn; here the checkpoint's chat template does that.
"""

from __future__ import annotations

from whatsup_tasks.subsets import Subset


def option_list(options: tuple[str, ...]) -> str:
    """``left, right, on or under``."""
    return ", ".join(options[:-1]) + f" or {options[-1]}"


def build_question(subject: str, obj: str | None, subset: Subset) -> str:
    where = f"in relation to the {obj}" if subset.objects == 2 else "in the photo"
    return f"Where is the {subject} {where}? Answer with {option_list(subset.options)}."
