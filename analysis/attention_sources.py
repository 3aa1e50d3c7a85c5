"""Which attention log belongs to a run: for the report, ``analysis heatmap`` and the viewer alike.

A run remembers its log only as the ``attention_log`` model argument the user typed, often a relative path from
wherever lmms-eval was started, and the runs may since have moved; so the folder is looked for from the current folder
and from the results file's folders, and ``--attention_log RUN=FOLDER`` can name it. The three commands find the log
here, in one way, so that a run that has maps in one of them has them in all, and each says why when it has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.runs import Run
from models.arguments import is_unset
from models.attention_log import AttentionLog, AttentionLogError, read_attention_log


@dataclass
class AttentionSource:
    log: AttentionLog | None
    description: str  # the folder and record count, or why there is none


def _candidate_folders(value: str, run: Run) -> list[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    bases = [Path.cwd()]
    for results_file in run.results_files:
        bases += [results_file.parent, results_file.parent.parent, results_file.parent.parent.parent]
    return [base / path for base in bases]


def attention_source(run: Run, overrides: dict[str, str]) -> AttentionSource:
    """The run's attention log: an override (by label, model or RUN argument), else model_args' attention_log."""
    override = next((overrides[k] for k in (run.label, run.source, run.model) if k in overrides), None)
    if override is not None and is_unset(override):
        return AttentionSource(None, "switched off with --attention_log")
    value = override or run.args.get("attention_log")
    if is_unset(value):
        return AttentionSource(None, "the run had no attention_log in its model_args")
    candidates = _candidate_folders(value, run)
    folder = next((c for c in candidates if c.is_dir()), candidates[0])
    try:
        log = read_attention_log(folder, model=run.model)
    except AttentionLogError as error:
        return AttentionSource(None, str(error))
    return AttentionSource(log, f"{folder} ({len(log.records)} records)")
