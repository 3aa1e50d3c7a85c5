"""lmms-eval's task index, built once per process for every command that looks tasks up.

Indexing every task folder (lmms-eval's own, ours, and ``--include_path``) takes seconds, and one process may ask for
it many times: the sweep loading its task, the report reading each task's metrics, the viewer its images, the study
script checking names. One cached factory, in the lowest package, so that they all share one index per set of folders
instead of each keeping its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any


def task_manager(include_path: str | Path | Iterable[str | Path] | None = None) -> Any:
    """lmms-eval's ``TaskManager`` with ``include_path`` (a folder or several, as lmms-eval's ``--include_path``)."""
    if include_path is None:
        folders: tuple[str, ...] = ()
    elif isinstance(include_path, (str, Path)):
        folders = (str(include_path),)
    else:
        folders = tuple(str(path) for path in include_path)
    return _indexed(folders)


@lru_cache(maxsize=8)
def _indexed(folders: tuple[str, ...]) -> Any:
    import lmms_eval.models  # noqa: F401  (our entry point adds our task folders to every TaskManager)
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_path=list(folders) or None)
