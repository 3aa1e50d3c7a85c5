"""``python -m finetune``: parse, train, and turn known input errors into one clear line."""

from __future__ import annotations

import sys

from finetune.args import ArgumentError, parse_args
from finetune.collate import TemplateError
from vsr_tasks.data import VSRDataError

USER_ERRORS = (ArgumentError, VSRDataError, TemplateError, FileNotFoundError, FileExistsError, ModuleNotFoundError)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success, 2 on bad input (message on stderr, no traceback)."""
    try:
        args = parse_args(argv)
        from finetune.train import run  # heavy imports only once the arguments are good

        run(args)
    except USER_ERRORS as error:
        print(f"python -m finetune: error: {error}", file=sys.stderr)
        return 2
    return 0
