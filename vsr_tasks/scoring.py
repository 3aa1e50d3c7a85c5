"""Answer parsing and the VSR metrics (accuracy, F1 of True, unparseable rate, per category)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_ANSWER = re.compile(
    r"""^[\s"'`*(\[]*                       # leading quotes, markdown, brackets
        (?:(?:the\s+)?answer(?:\s+is)?\s*[:\-]?\s*)?   # optional 'Answer:' / 'The answer is'
        [\s"'`*(\[]*
        (true|false|yes|no)\b""",
    re.IGNORECASE | re.VERBOSE,
)
_MEANING = {"true": True, "yes": True, "false": False, "no": False}


def parse_answer(text: str) -> bool | None:
    """True / False from a model answer, or None when it says neither.

    Accepts any case, punctuation and a trailing explanation ("False. The cat is
    ..."), yes/no, and an 'Answer:' prefix. Anything else is unparseable, which
    is scored as wrong and counted separately so a formatting failure is visible.
    """
    match = _ANSWER.match(text or "")
    return _MEANING[match.group(1).lower()] if match else None


def score_record(prediction_text: str, label: int, relation: str, category: str) -> dict:
    """Per-document record that every VSR aggregation reads."""
    prediction = parse_answer(prediction_text)
    return {
        "prediction": prediction,
        "label": int(label),
        "correct": prediction is not None and prediction == bool(label),
        "relation": relation,
        "category": category,
    }


def accuracy(records: Iterable[Mapping]) -> float:
    records = list(records)
    return sum(r["correct"] for r in records) / len(records) if records else float("nan")


def f1_true(records: Iterable[Mapping]) -> float:
    """F1 of the True class; an unparseable answer counts as 'not True'."""
    tp = fp = fn = 0
    for r in records:
        predicted_true = r["prediction"] is True
        if predicted_true and r["label"] == 1:
            tp += 1
        elif predicted_true:
            fp += 1
        elif r["label"] == 1:
            fn += 1
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def unparseable_rate(records: Iterable[Mapping]) -> float:
    records = list(records)
    return sum(r["prediction"] is None for r in records) / len(records) if records else float("nan")


def category_accuracy(records: Iterable[Mapping], category: str) -> float:
    """Accuracy over the documents of one meta-category (NaN when there are none)."""
    return accuracy(r for r in records if r["category"] == category)
