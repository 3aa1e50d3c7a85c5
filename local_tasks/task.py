"""A task whose documents we read ourselves, for lmms-eval's simple and chat models alike.

Why a class: VSR's rows and WhatsUp's files are found through environment variables (or ship with the package), which
a plain YAML task cannot name, so each task YAML sets ``class: !function utils.SomeTask`` and the class reads them.
lmms-eval then builds that class whatever the model, while its two kinds of model expect requests of two shapes:

- a simple model (``is_simple = True``: ours, and lmms-eval's with ``--force_simple``) reads
  ``(context, generation_kwargs, doc_to_visual, doc_id, task, split)``, as ``ConfigurableTask`` builds them;
- a chat model (lmms-eval's default ``qwen3_vl``, ``llava_hf``, ...) reads
  ``(context, doc_to_messages, generation_kwargs, doc_id, task, split)``, as ``ConfigurableMessagesTask`` builds them.

lmms-eval picks the right class for a plain YAML task from the model's kind; for a class task it does not. So every
lmms-eval ``TaskManager.load_task_or_group(tasks, task_type)`` call is wrapped (:func:`install_model_kind_hook`, run by
our ``lmms_eval.models`` entry point before any task is built) to note the kind it builds for, and
:class:`LocalRowsTask` builds its requests in that shape. The messages are lmms-eval's own (images first, then the
text of ``doc_to_text``), so a chat model sees the same turn our models render.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import datasets
from lmms_eval.api.task import ConfigurableMessagesTask, ConfigurableTask

SIMPLE, CHAT = "simple", "chat"
_MODEL_KIND: contextvars.ContextVar[str] = contextvars.ContextVar("lmms_eval_model_kind", default=SIMPLE)
_HOOK_MARKER = "_local_tasks_model_kind"


@contextmanager
def building_for(kind: str) -> Iterator[None]:
    """Tasks built inside this block build their requests for a ``kind`` (``simple`` or ``chat``) model."""
    if kind not in (SIMPLE, CHAT):
        raise ValueError(f"model kind must be {SIMPLE!r} or {CHAT!r}, got {kind!r}")
    token = _MODEL_KIND.set(kind)
    try:
        yield
    finally:
        _MODEL_KIND.reset(token)


def install_model_kind_hook() -> None:
    """Idempotently wrap ``TaskManager.load_task_or_group`` so that the tasks it builds know the model's kind."""
    from lmms_eval.tasks import TaskManager

    original = TaskManager.load_task_or_group
    if getattr(original, _HOOK_MARKER, False):
        return

    @functools.wraps(original)
    def load_task_or_group(self: Any, task_list: Any = None, task_type: str = SIMPLE) -> dict:
        with building_for(task_type):
            return original(self, task_list, task_type)

    setattr(load_task_or_group, _HOOK_MARKER, True)
    TaskManager.load_task_or_group = load_task_or_group


class LocalRowsTask(ConfigurableMessagesTask):
    """A generate task over documents from :meth:`documents`, asked in the shape of the model it was built for.

    A ``ConfigurableMessagesTask`` (so also a ``ConfigurableTask``): for a chat model its own requests and
    ``doc_to_messages``; for a simple model ``ConfigurableTask``'s requests.
    """

    def __init__(self, config: dict) -> None:
        self.model_kind = _MODEL_KIND.get()
        super().__init__(config={key: value for key, value in config.items() if key != "class"})

    def documents(self, dataset_kwargs: dict) -> list[dict]:
        """The task's documents, each a flat dict of Arrow-friendly values."""
        raise NotImplementedError

    def download(self, dataset_kwargs: dict | None = None) -> None:
        split = self.config.test_split
        documents = datasets.Dataset.from_list(self.documents(dict(dataset_kwargs or {})))
        self.dataset = datasets.DatasetDict({split: documents})
        self.dataset_no_image = self.dataset

    def construct_requests(self, doc_id: int, ctx: str, **kwargs: Any) -> Any:
        if self.model_kind == CHAT:
            return super().construct_requests(doc_id, ctx, **kwargs)
        return ConfigurableTask.construct_requests(self, doc_id, ctx, **kwargs)
