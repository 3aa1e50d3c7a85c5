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


def unquote(value: Any) -> Any:
    """A text argument without the quotes that protect its commas on the command line (lmms-eval keeps them):
    ``system_prompt="A chat, between ..."``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_batch_size(batch_size: int | str) -> int:
    """A positive integer (lmms-eval's ``auto`` batch sizing is not supported)."""
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"batch_size must be a positive integer, got {batch_size!r} ('auto' is not supported)"
        ) from None
    if value < 1:
        raise ValueError(f"batch_size must be a positive integer, got {value}")
    return value


def parse_flag(name: str, value: Any) -> bool:
    """A ``true``/``false`` argument (lmms-eval has converted it to a bool already); anything else is refused."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value
