"""AdaptVis' questions for WhatsUp (its ``prompts/*_with_answer_*_options.jsonl``), built from each caption.

Two objects: "Where is the X in relation to the Y? Answer with left, right, on or under." One object: "Where is the X
in the photo? Answer with left, right, top or bottom." The options are the subset's, in AdaptVis' order. AdaptVis
wraps the question in LLaVA-1.5's ``USER: ... ASSISTANT:`` turn; here the checkpoint's chat template does that.

Their prompt files differ from the rebuilt questions on some rows (docs/REPRODUCE.md counts them); with
``$ADAPTVIS_PROMPTS_DIR`` set to their ``prompts/`` folder, :func:`adaptvis_questions` reads the questions from the
files instead, row for row (their code indexes the prompt list by the dataset row, ``model_zoo/llava15.py:359``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from whatsup_tasks.data import WhatsUpDataError
from whatsup_tasks.subsets import Subset

PROMPTS_VARIABLE = "ADAPTVIS_PROMPTS_DIR"
TURN = ("<image>\nUSER: ", "\nASSISTANT:")  # how their files wrap each question (LLaVA-1.5's turn)


def option_list(options: tuple[str, ...]) -> str:
    """``left, right, on or under``."""
    return ", ".join(options[:-1]) + f" or {options[-1]}"


def build_question(subject: str, obj: str | None, subset: Subset) -> str:
    where = f"in relation to the {obj}" if subset.objects == 2 else "in the photo"
    return f"Where is the {subject} {where}? Answer with {option_list(subset.options)}."


def prompts_dir() -> Path | None:
    """AdaptVis' ``prompts/`` folder when ``$ADAPTVIS_PROMPTS_DIR`` names one (None: rebuild the questions)."""
    value = os.environ.get(PROMPTS_VARIABLE, "").strip()
    return Path(value).expanduser() if value else None


def prompt_file(subset: Subset) -> str:
    """The subset's file in AdaptVis' ``prompts/``: ``Controlled_Images_A_with_answer_four_options.jsonl``."""
    return f"{subset.official}_with_answer_{'six' if len(subset.options) == 6 else 'four'}_options.jsonl"


def adaptvis_questions(folder: Path, subset: Subset, rows: int) -> list[str]:
    """The subset's questions as AdaptVis' file writes them, one per annotation row, without the LLaVA turn around
    them; a missing file, a line of another shape or another number of rows is refused naming the file."""
    path = folder / prompt_file(subset)
    if not path.is_file():
        raise WhatsUpDataError(f"{path} is missing: {PROMPTS_VARIABLE} must be AdaptVis' prompts/ folder")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            text = str(json.loads(line)["question"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise WhatsUpDataError(f"{path}:{number}: not a prompt line ({error})") from None
        if not (text.startswith(TURN[0]) and text.endswith(TURN[1])):
            raise WhatsUpDataError(f"{path}:{number}: the question is not wrapped as {TURN[0]!r}...{TURN[1]!r}")
        questions.append(text[len(TURN[0]) : -len(TURN[1])])
    if len(questions) != rows:
        raise WhatsUpDataError(f"{path} has {len(questions)} questions but {subset.annotation} has {rows} rows")
    return questions
