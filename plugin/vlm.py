"""The lmms-eval adapter: every ``--model`` of this plugin is this class with a name, its families and its method.

Our own wrapper rather than lmms-eval's per-family ones: those import decord or qwen_vl_utils and offer no seam
around the prefill, which every intervention needs. This class only translates: ``--model_args`` into a resolved
:class:`~models.checkpoint.Checkpoint`, a method runner (``models.runner``) and an :class:`~models.engine.Engine`;
lmms-eval's requests into prepared batches and back into answers. The answering itself is the engine's, so the
sweep, the viewer and the benchmarks, which call the engine directly, answer exactly as an evaluation does.

The classes lmms-eval registers are generated (``plugin.registered``): each sets :attr:`VLM.MODEL_NAME`,
:attr:`VLM.FAMILIES` and :attr:`VLM.METHOD`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from models.answer_cache import AnswerCache, Request, cache_root
from models.arguments import parse_batch_size
from models.batch import truncate_at_stops
from models.folders import writable_folder
from models.loading import COMMON_ARGUMENTS, UnknownArguments, load_engine
from models.names import DEFAULT_PRETRAINED
from models.spec import MethodSpec
from plugin.loading import LAYER_PROFILER, accelerate_process
from plugin.requests import RequestBatches


class VLM(lmms):
    """A vision-language model of any supported family for lmms-eval ``generate_until`` tasks with images (any
    number) or none, with at most one method."""

    is_simple = True
    MODEL_NAME: ClassVar[str] = ""  # set by the generated classes (``plugin.registered``), as FAMILIES and METHOD
    FAMILIES: ClassVar[tuple[str, ...] | None] = None  # the model types this model takes (None: every family)
    METHOD: ClassVar[MethodSpec | None] = None  # None: the baseline

    def __new__(cls, *args: Any, **kwargs: Any) -> VLM:
        if not cls.MODEL_NAME:
            raise TypeError(
                f"{cls.__name__} is a base class: instantiate a registered model (models.model_class(NAME))"
            )
        return super().__new__(cls)

    def __init__(
        self,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        answer_cache: str | None = None,
        **arguments: Any,
    ) -> None:
        """``arguments``: ``models.loading.load_engine``'s (the common ones, documented there) and the method's;
        ``answer_cache``: where answers are kept as they are given (``models.answer_cache``)."""
        super().__init__()
        del max_batch_size  # lmms-eval always passes it; there is no automatic batch sizing here
        self.batch_size_per_gpu = parse_batch_size(batch_size)
        process, self.accelerator = accelerate_process()
        self._rank, self._world_size = process.rank, process.world_size
        try:
            self.engine = load_engine(
                self.MODEL_NAME, self.FAMILIES, self.METHOD, process=process, layer_profiler=LAYER_PROFILER, **arguments
            )
        except UnknownArguments as error:
            raise ValueError(
                f"unknown model argument(s) for {self.MODEL_NAME}: {error}. "
                f"Valid arguments: {', '.join(self.valid_arguments())}"
            ) from None
        self._answer_cache_root = cache_root(answer_cache)
        if answer_cache is not None and self._answer_cache_root is not None:  # named: checked now, not at the end
            writable_folder(self._answer_cache_root, "answer_cache")
        self._answer_cache_args = {**arguments, "batch_size": batch_size}
        self._answer_cache: AnswerCache | None = None

    @property
    def answer_cache(self) -> AnswerCache | None:
        """The kept answers of this run (None: ``answer_cache=none``), opened on the first request, so that commands
        which only borrow the adapter's batching (the sweep) leave no folder behind."""
        if self._answer_cache is None and self._answer_cache_root is not None:
            args = self._answer_cache_args
            pretrained = str(args.get("pretrained", DEFAULT_PRETRAINED))
            cache = AnswerCache(self._answer_cache_root, self.MODEL_NAME, args, pretrained, self._rank)
            log = self.engine.attention_log
            dropped = log.keep_answered(cache.documents) if log is not None else 0
            note = f"; {dropped} attention record(s) of unanswered documents dropped, written again" if dropped else ""
            logger.info(
                f"{self.MODEL_NAME}: answers kept in {cache.folder} ({len(cache.answers)} from earlier runs{note})"
            )
            self._answer_cache = cache
        return self._answer_cache

    # ----------------------------------------------------------------- set-up
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> VLM:
        """As lmms-eval's, except that ``batch_size`` in ``--model_args`` wins over the CLI default."""
        args = lmms_utils.simple_parse_args_string(arg_string)
        extra = {
            key: value for key, value in (additional_config or {}).items() if value is not None and key not in args
        }
        return cls(**args, **extra)

    @classmethod
    def valid_arguments(cls) -> list[str]:
        """Every ``--model_args`` key this model accepts: the loader's, the adapter's own, the method's."""
        after = COMMON_ARGUMENTS.index("dtype") + 1  # the docs' order: pretrained, device, dtype, batch_size, ...
        common = [*COMMON_ARGUMENTS[:after], "batch_size", "max_batch_size", *COMMON_ARGUMENTS[after:], "answer_cache"]
        return common + ([argument.name for argument in cls.METHOD.arguments()] if cls.METHOD else [])

    # ------------------------------------------------------- lmms-eval surface
    @property
    def model(self) -> torch.nn.Module:
        return self.engine.model

    @property
    def method(self) -> Any:
        """The method's runner (None: the baseline)."""
        return self.engine.method

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            f"{self.MODEL_NAME} answers generate_until tasks only (lmms-eval 0.7 breaks loglikelihood outputs)."
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(f"{self.MODEL_NAME} does not implement multi-round generation.")

    @property
    def batches(self) -> RequestBatches:
        """lmms-eval's batching over the documents lmms-eval handed this model (``task_dict``)."""
        return RequestBatches(self.engine, self.task_dict, self.batch_size)

    def cache_request(self, args: tuple) -> Request:
        """A request's identity for the answer cache: its task, document, context and generation settings."""
        context, generation, _, doc_id, task, _ = args
        return Request(task, int(doc_id), context, dict(generation), self.batches.document(args))

    def generate_until(self, requests: list[Instance]) -> list[str]:
        logger.info(f"{self.MODEL_NAME} rank {self.rank}/{self.world_size}: {len(requests)} requests")
        kept: dict[int, str] = {}
        cache = self.answer_cache
        if cache is not None:
            for index, request in enumerate(requests):
                answer = cache.get(self.cache_request(request.args))
                if answer is not None:
                    kept[index] = answer
                    self.cache_hook.add_partial("generate_until", (request.args[0], request.args[1]), answer)
            if kept:
                logger.info(f"{self.MODEL_NAME}: {len(kept)} of {len(requests)} answers kept from an earlier run")
        fresh = [request for index, request in enumerate(requests) if index not in kept]
        answers = iter(self.answer(fresh, len(requests), len(kept)))
        return [kept[index] if index in kept else next(answers) for index in range(len(requests))]

    def answer(self, requests: list[Instance], total: int, done: int) -> list[str]:
        """Compute ``requests`` in lmms-eval's batches (``done`` of ``total`` were kept); answers in request order."""
        batches = self.batches
        collator, chunks = batches.chunks(requests)
        answers: list[str] = []
        progress = tqdm(total=total, initial=done, disable=self.rank != 0, desc=f"{self.MODEL_NAME} responding")
        # Images are decoded and processed for the next batch while the model answers this one.
        with ThreadPoolExecutor(max_workers=1) as prefetcher:
            upcoming = prefetcher.submit(batches.prepare, chunks[0]) if chunks else None
            for index, chunk in enumerate(chunks):
                batch = upcoming.result()
                if index + 1 < len(chunks):
                    upcoming = prefetcher.submit(batches.prepare, chunks[index + 1])
                settings = batches.settings(chunk)
                response = self.engine.respond(batch, settings)
                texts = [truncate_at_stops(text, settings.until) for text in response.texts]
                self.engine.finish(batch, response, texts)  # the attention log first, then the kept answers
                if self.answer_cache is not None:
                    self.answer_cache.put([(self.cache_request(args), text) for args, text in zip(chunk, texts)])
                for args, text in zip(chunk, texts):
                    answers.append(text)
                    self.cache_hook.add_partial("generate_until", (args[0], args[1]), text)
                progress.update(len(chunk))
        progress.close()
        return collator.get_original(answers)
