"""Make a bare ``lmms-eval --tasks vsr_random_dev`` (or ``whatsup``) find our task folders.

lmms-eval 0.7 indexes tasks only from its own ``tasks/`` folder and
``--include_path``; it has no task entry point, and ``LMMS_EVAL_PLUGINS`` is read
after the index is built. Its model registry, however, loads our
``lmms_eval.models`` entry point before any ``TaskManager`` exists (the CLI
imports ``lmms_eval.models`` through the evaluator). That hook calls
:func:`register_task_folder`, which adds our folder to every TaskManager's
search path. ``tests/unit/vsr_tasks/test_tasks.py`` (``test_lmms_eval_still_has_the_methods_registration_wraps``) fails
loudly if lmms-eval changes the methods this relies on.
"""

from __future__ import annotations

import functools

from local_tasks.task import install_model_kind_hook
from vsr_tasks import TASKS_DIR

_MARKER = "_vsr_tasks_folder_added"


def task_folders() -> list[str]:
    """Our task folders: VSR's and WhatsUp's."""
    from whatsup_tasks import TASKS_DIR as WHATSUP_TASKS_DIR

    return [str(TASKS_DIR), str(WHATSUP_TASKS_DIR)]


def register_task_folder() -> None:
    """Idempotently extend ``TaskManager.initialize_tasks`` with our task folders, and let our tasks learn the kind
    of model they are built for (``local_tasks.task.install_model_kind_hook``: chat or simple requests)."""
    from lmms_eval.tasks import TaskManager

    install_model_kind_hook()

    original = TaskManager.initialize_tasks
    if getattr(original, _MARKER, False):
        return

    @functools.wraps(original)
    def initialize_tasks(self, include_path=None, include_defaults=True):
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        for ours in task_folders():
            if all(str(p).rstrip("/") != ours for p in paths):
                paths.append(ours)
        return original(self, include_path=paths, include_defaults=include_defaults)

    setattr(initialize_tasks, _MARKER, True)
    TaskManager.initialize_tasks = initialize_tasks
