"""AdaptVis' answer check for WhatsUp, and accuracy overall and per relation.

AdaptVis (``model_zoo/llava15.py``) counts an answer right when the gold word (``On``, ``Left``, ...) appears in it,
case-insensitively, unless the gold is ``on`` and the answer says ``front``. It is a substring test: "on" is also
found in "phone" or "lemon"; kept as it is, since the papers' numbers come from it (``prediction`` in the record is
the first option word the answer contains, as a whole word, for inspection).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence


def is_correct(answer: str, relation: str) -> bool:
    text = answer.strip().lower()
    return relation.lower() in text and not (relation.lower() == "on" and "front" in text)


def predicted_option(answer: str, options: Sequence[str]) -> str | None:
    """The first of ``options`` the answer says as a whole word (None: none)."""
    found = [(m.start(), option) for option in options if (m := re.search(rf"\b{re.escape(option)}\b", answer.lower()))]
    return min(found)[1] if found else None


def accuracy(records: Sequence[dict], relation: str | None = None) -> float:
    """Share of right answers (among the documents of ``relation``; NaN when there are none)."""
    kept = [r for r in records if relation is None or r["relation"] == relation]
    if not kept:
        return math.nan
    return sum(bool(r["correct"]) for r in kept) / len(kept)
