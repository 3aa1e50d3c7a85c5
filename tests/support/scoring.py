"""VSR's answer rule read independently of the code under test, and accuracies recomputed with it."""

from __future__ import annotations

ANSWER_WORDS = {"true": True, "yes": True, "false": False, "no": False}

SKIPPED_LEADING = " \t\r\n\"'`*(["

ANSWER_PREFIXES = ("the answer is", "the answer", "answer is", "answer")


def reference_answer(text: str) -> bool | None:
    """VSR's answer rule as the README states it, written independently of ``vsr_tasks.scoring.parse_answer``: after
    quotes, markdown and brackets, an optional "Answer:" / "The answer is", then True/False/yes/no as a whole word,
    any case; anything else says neither."""
    rest = (text or "").lstrip(SKIPPED_LEADING)
    lowered = rest.lower()
    for prefix in ANSWER_PREFIXES:
        if lowered.startswith(prefix):
            after = rest[len(prefix) :].lstrip(" \t\r\n")
            after = after[1:] if after[:1] in (":", "-") else after
            found = _answer_word(after.lstrip(SKIPPED_LEADING))
            if found is not None:
                return found
            break
    return _answer_word(rest)


def _answer_word(text: str) -> bool | None:
    lowered = text.lower()
    for word, meaning in ANSWER_WORDS.items():
        if lowered.startswith(word):
            following = lowered[len(word) : len(word) + 1]
            if not following or not (following.isalnum() or following == "_"):
                return meaning
    return None


def vsr_accuracy_from_samples(samples: list[dict]) -> float:
    """A VSR task's accuracy recomputed from its samples file with :func:`reference_answer` (not the code's parser)."""
    hits = [reference_answer(s["filtered_resps"]) == (s["target"] == "True") for s in samples]
    return sum(hits) / len(hits)
