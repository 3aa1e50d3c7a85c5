"""Defaults the command line shows before it imports any drawing code (matplotlib reads its config dir on import,
and ``analysis view`` must first point it into its cache folder)."""

from models.names import DEFAULT_BASELINE  # noqa: F401  (re-exported; torch-free)

DEFAULT_EXAMPLES = 8
