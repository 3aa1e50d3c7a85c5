"""Defaults the command line shows before it imports any drawing code (matplotlib reads its config dir on import,
and ``analysis view`` must first point it into its cache folder)."""

DEFAULT_BASELINE = "qwen3vl"
DEFAULT_EXAMPLES = 8
