"""lmms-eval's requests as the engine's batches: lmms-eval's own batching, each chunk prepared and its settings read.

Anything that must answer exactly as an evaluation does batches through :class:`RequestBatches`: the lmms-eval models
(``plugin.vlm``) and the sweep (``sweep.engine``), which runs on an engine without lmms-eval's model adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmms_eval import utils as lmms_utils

from models.batch import GenerationSettings, PreparedBatch
from models.engine import Engine


class RequestBatches:
    """lmms-eval requests for ``engine``, ``batch_size`` at a time; ``task_dict``: task -> split -> documents (what
    lmms-eval sets on a model as ``task_dict``), where each request's visuals are read from."""

    def __init__(self, engine: Engine, task_dict: Mapping[str, Any], batch_size: int) -> None:
        self.engine = engine
        self.task_dict = task_dict
        self.batch_size = batch_size

    def chunks(self, requests: list[Any]) -> tuple[Any, list[list[tuple]]]:
        """lmms-eval's batching of ``requests``: (collator, chunks of request args), longest contexts first, requests
        with equal ``generation_kwargs`` together."""

        def sort_key(args: tuple) -> tuple[int, str]:
            return -len(args[0]), args[0]

        collator = lmms_utils.Collator([request.args for request in requests], sort_key, grouping=True)
        return collator, list(collator.get_batched(n=self.batch_size, batch_fn=None))

    def document(self, args: tuple) -> dict:
        """The document a request is about."""
        _, _, _, doc_id, task, split = args
        return self.task_dict[task][split][doc_id]

    def settings(self, chunk: list[tuple]) -> GenerationSettings:
        """The generation settings of a chunk (the collator groups requests with equal ``generation_kwargs``)."""
        tokenizer = self.engine.tokenizer
        return GenerationSettings.from_task(chunk[0][1], tokenizer.decode([tokenizer.eos_token_id]))

    def prepare(self, chunk: list[tuple]) -> PreparedBatch:
        """A chunk of request args (context, kwargs, doc_to_visual, doc_id, task, split) as a batch."""
        contexts, _, doc_to_visual, doc_ids, tasks, _ = zip(*chunk)
        visuals = [doc_to_visual[i](self.document(args)) for i, args in enumerate(chunk)]
        return self.engine.prepare(list(contexts), visuals, list(doc_ids), list(tasks))
