"""How ``--model_args`` values are read where the project reads them itself (lmms-eval parses the string first).

lmms-eval turns ``true``/``false`` and numbers into Python values but leaves ``none`` a string, and a user clears an
argument with ``key=`` or ``key=none``: every one of these spellings means "not given".
"""

from __future__ import annotations

from typing import Any

UNSET = (None, "", "none", "None")
DEFAULT_MAX_NEW_TOKENS = 128  # a task whose generation_kwargs name no max_new_tokens (the VSR tasks name 8)


def is_unset(value: Any) -> bool:
    """Whether a model argument was left out (any spelling of "nothing")."""
    return value in UNSET
