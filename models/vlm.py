"""The baseline vision-language model as an lmms-eval ``simple`` model (``--model vlm_baseline``; ``qwen3vl``).

Our own wrapper rather than lmms-eval's per-family ones: those import decord or qwen_vl_utils and offer no seam
around the prefill, which every intervention needs. The checkpoint's family (``families``: Qwen3-VL, Qwen2.5-VL,
LLaVA-1.5) is read from its config before any weight is loaded; everything family-specific goes through it. The
seams, in the order a batch meets them:

- :meth:`prepare_batch` turns lmms-eval requests into a :class:`PreparedBatch`
  (processed tensors, the image-token mask, each image's token grid);
- :meth:`respond` produces the answers; by default one :meth:`generate` call
  inside :meth:`steering`, the scoped state an intervention activates;
- :meth:`prompt_prefix` computes the prompt's first N - 1 positions once
  (``interventions.prefix``), so that a confidence pass, a steered pass and
  every grid point cost one forward of the last position each; :meth:`generate`
  continues from such a prefix;
- :meth:`prefill_logits` runs one whole-prompt forward for decisions taken
  before generation (the two-pass path);
- :meth:`finish_batch` sees the batch and its response once answers exist
  (the attention log writes there).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from tqdm import tqdm
from transformers import AutoProcessor

from families import Family, FamilyError, family_for
from families.devices import pick_device, pick_dtype
from families.turns import images_first, interleaved, render_user_turn
from interventions.prefix import PrefixUnsupported, PromptPrefix, compute_prefix
from models.arguments import DEFAULT_MAX_NEW_TOKENS, is_unset
from models.names import DEFAULT_PRETRAINED
from models.sharding import input_device, parse_placement

BEAMS_REFUSED = "beam search, num_beams > 1, is not supported under steering or the attention log"


@dataclass
class GenerationSettings:
    """What a task's ``generation_kwargs`` ask for, normalised."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    until: list[str] = field(default_factory=list)

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    @classmethod
    def from_task(cls, gen_kwargs: dict, default_stop: str) -> GenerationSettings:
        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.pop("until", [default_stop])
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, list):
            raise ValueError(f"generation_kwargs['until'] must be a string or a list, got {type(until).__name__}")
        return cls(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=float(gen_kwargs.get("temperature", 0.0) or 0.0),
            top_p=gen_kwargs.get("top_p"),
            num_beams=int(gen_kwargs.get("num_beams", 1) or 1),
            until=[stop for stop in until if stop],
        )


@dataclass
class PreparedBatch:
    """One batch as the model sees it, plus what interventions and logs need to know about it."""

    contexts: list[str]  # as the task wrote them (placeholders included)
    images: list[list[Image.Image]]  # per sequence, in prompt order (the order of the image grids and maps)
    doc_ids: list[int]
    task_names: list[str]
    inputs: Any  # BatchFeature on the model's device, left-padded
    image_token_mask: torch.Tensor  # [B, N] bool, True at image-token positions
    image_grids: list[list[tuple[int, int]]]  # per sequence, per image: (rows, columns) of its image tokens
    visuals: list[list[Image.Image]] = field(default_factory=list)  # per sequence, in the task's order
    image_regions: list[list[tuple[float, float, float, float]]] = field(default_factory=list)  # the grid's cover

    @property
    def size(self) -> int:
        return len(self.contexts)


@dataclass
class Response:
    """Answers of one batch and what the generation saw of its first token."""

    texts: list[str]
    first_token_probs: torch.Tensor  # [B, V] softmax of the first generated token's logits
    first_token_logits: torch.Tensor | None = None  # [B, V] float32, the raw logits themselves
    generated_tokens: list[int] = field(default_factory=list)  # per sequence, tokens generated (stop included)
    extras: list[dict] = field(default_factory=list)  # per sequence, for the attention log

    def rows(self, start: int, stop: int) -> Response:
        """The sequences ``start:stop`` (one setting of a batch answered for several settings at once)."""
        return Response(
            texts=self.texts[start:stop],
            first_token_probs=self.first_token_probs[start:stop],
            first_token_logits=None if self.first_token_logits is None else self.first_token_logits[start:stop],
            generated_tokens=self.generated_tokens[start:stop],
            extras=[dict(extra) for extra in self.extras[start:stop]],
        )


class VLM(lmms):
    """A vision-language model of any supported family for lmms-eval ``generate_until`` tasks with images (any
    number) or none."""

    is_simple = True
    MODEL_NAME: ClassVar[str] = ""  # set by the generated classes (``models.registered``), as FAMILIES
    FAMILIES: ClassVar[tuple[str, ...] | None] = None  # the model types this model takes (None: every family)
    STEERS: ClassVar[bool] = False  # whether answers come from a steered last row (no beam search then)

    def __new__(cls, *args: Any, **kwargs: Any) -> VLM:
        if not cls.MODEL_NAME:
            raise TypeError(
                f"{cls.__name__} is a base class: instantiate a registered model (models.model_class(NAME))"
            )
        return super().__new__(cls)

    def __init__(
        self,
        pretrained: str = DEFAULT_PRETRAINED,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        attention_log: str | None = None,
        system_prompt: str | None = None,
        interleave_visuals: bool = False,
        device_map: str | None = None,
        max_memory: str | None = None,
        offload_folder: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(
                f"unknown model argument(s) for {self.MODEL_NAME}: {', '.join(sorted(unknown))}. "
                f"Valid arguments: {', '.join(self.valid_arguments())}"
            )
        del max_batch_size  # lmms-eval always passes it; there is no automatic batch sizing here
        self.family: Family = self.family_of(pretrained)
        self.accelerator = Accelerator()
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        self.placement = parse_placement(device_map, max_memory, offload_folder, device, self._world_size)
        self._device = pick_device(device, self._world_size, self.accelerator.local_process_index)
        self.torch_dtype = pick_dtype(dtype, self._device)
        self.batch_size_per_gpu = self._parse_batch_size(batch_size)
        self.system_prompt = system_prompt.replace("\\n", "\n") if isinstance(system_prompt, str) else None
        self.attention_log = None if is_unset(attention_log) else Path(attention_log)
        if not isinstance(interleave_visuals, bool):
            raise ValueError(f"interleave_visuals must be true or false, got {interleave_visuals!r}")
        self.interleave_visuals = interleave_visuals

        self.processor = AutoProcessor.from_pretrained(pretrained)
        self.config = self._config(pretrained)
        try:
            self.family.check(self.config, self.processor)
            self.min_pixels, self.max_pixels = self.family.configure_pixels(self.processor, min_pixels, max_pixels)
        except FamilyError as error:
            raise ValueError(f"{self.MODEL_NAME}: {error}") from None
        problem = self.family.grid_problem(self.config)
        if self.attention_log is not None and problem is not None:
            raise ValueError(f"{self.MODEL_NAME}: attention_log stores per-image attention maps, but {problem}")
        self.processor.tokenizer.padding_side = "left"
        self._model = self.family.load(pretrained, self.torch_dtype, **self.placement.load_kwargs())
        if self.placement.sharded:  # transformers placed every layer; the inputs go where the first layer is
            self._device = input_device(self._model)
            self._model.eval()
        else:
            self._model.to(self._device).eval()
        self.pretrained = pretrained
        self._warned_prefix = False
        self.grid_rows = 64  # respond_grid: at most this many rows (sequences x settings) in one steered pass
        self.image_token_id = self.family.image_token_id(self._model)
        self.num_layers = self.family.text_config(self._model).num_hidden_layers
        self._attention_writer = None  # made on first use, once the model (and any method) is set up

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
        """Every ``--model_args`` key this model accepts (a method's model adds its own)."""
        import inspect

        return [
            name
            for name, parameter in inspect.signature(VLM.__init__).parameters.items()
            if name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        ]

    @classmethod
    def family_of(cls, pretrained: str) -> Family:
        """The checkpoint's family, from its config alone; a model type this model does not take is refused here."""
        try:
            return family_for(pretrained, cls.FAMILIES, cls.MODEL_NAME)
        except FamilyError as error:
            raise ValueError(f"{cls.MODEL_NAME}: {error}") from None

    @staticmethod
    def _config(pretrained: str):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(pretrained)

    @staticmethod
    def _parse_batch_size(batch_size: int | str) -> int:
        try:
            value = int(batch_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"batch_size must be a positive integer, got {batch_size!r} ('auto' is not supported)"
            ) from None
        if value < 1:
            raise ValueError(f"batch_size must be a positive integer, got {value}")
        return value

    def method_arguments(self) -> dict:
        """The method's parameters that shape an answer (the attention log's ``model_args``)."""
        return {}

    @property
    def attention_logger(self):
        """The attention log's writer (``attention_log=FOLDER``), made on first use; None when the log is off."""
        if self.attention_log is None:
            return None
        if self._attention_writer is None:
            from interventions import use_steered_attention
            from models.attention_log import AttentionLogWriter

            use_steered_attention(self._model)
            self._attention_writer = AttentionLogWriter(
                self.attention_log, self.rank, self.MODEL_NAME, self.num_layers, self.method_arguments()
            )
        return self._attention_writer

    @attention_logger.setter
    def attention_logger(self, writer) -> None:
        """The viewer's live re-runs point the log at their own folder, one request at a time."""
        self.attention_log = None if writer is None else Path(writer.folder)
        self._attention_writer = writer

    # ------------------------------------------------------- lmms-eval surface
    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

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

    def request_batches(self, requests: list[Instance]) -> tuple[Any, list[list[tuple]]]:
        """lmms-eval's batching of ``requests``: (collator, chunks of request args), longest contexts first.

        Anything that must answer exactly as an evaluation does (``python -m sweep``) batches through this.
        """

        def sort_key(args: tuple) -> tuple[int, str]:
            return -len(args[0]), args[0]

        collator = lmms_utils.Collator([request.args for request in requests], sort_key, grouping=True)
        return collator, list(collator.get_batched(n=self.batch_size, batch_fn=None))

    def generate_until(self, requests: list[Instance]) -> list[str]:
        logger.info(f"{self.MODEL_NAME} rank {self.rank}/{self.world_size}: {len(requests)} requests")
        collator, chunks = self.request_batches(requests)
        answers: list[str] = []
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc=f"{self.MODEL_NAME} responding")
        # Images are decoded and processed for the next batch while the model answers this one.
        with ThreadPoolExecutor(max_workers=1) as prefetcher:
            upcoming = prefetcher.submit(self.prepare_chunk, chunks[0]) if chunks else None
            for index, chunk in enumerate(chunks):
                batch = upcoming.result()
                if index + 1 < len(chunks):
                    upcoming = prefetcher.submit(self.prepare_chunk, chunks[index + 1])
                contexts, gen_kwargs = [args[0] for args in chunk], [args[1] for args in chunk]
                settings = self.chunk_settings(chunk)
                self.check_settings(settings)
                response = self.respond(batch, settings)
                texts = [truncate_at_stops(text, settings.until) for text in response.texts]
                self.finish_batch(batch, response, texts)
                for context, kwargs, text in zip(contexts, gen_kwargs, texts):
                    answers.append(text)
                    self.cache_hook.add_partial("generate_until", (context, kwargs), text)
                progress.update(len(chunk))
        progress.close()
        return collator.get_original(answers)

    def chunk_settings(self, chunk: list[tuple]) -> GenerationSettings:
        """The generation settings of a chunk (the collator groups requests with equal ``generation_kwargs``)."""
        return GenerationSettings.from_task(chunk[0][1], self.tokenizer.decode([self.eot_token_id]))

    def prepare_chunk(self, chunk: list[tuple]) -> PreparedBatch:
        """A chunk of lmms-eval request args (context, kwargs, doc_to_visual, doc_id, task, split) as a batch."""
        contexts, _, doc_to_visual, doc_ids, tasks, splits = zip(*chunk)
        visuals = [doc_to_visual[i](self.task_dict[tasks[i]][splits[i]][doc_ids[i]]) for i in range(len(chunk))]
        return self.prepare_batch(list(contexts), visuals, list(doc_ids), list(tasks))

    # ------------------------------------------------------------- the seams
    def prepare_batch(
        self,
        contexts: list[str],
        visuals: list[Any],
        doc_ids: list[int],
        task_names: list[str],
    ) -> PreparedBatch:
        """Chat-format and process a batch (left padding), and locate its image tokens.

        Images go first, or at their placeholders with ``interleave_visuals`` (``families.turns``).
        """
        turns, loaded = [], []
        for context, visual, doc_id, task_name in zip(contexts, visuals, doc_ids, task_names):
            images = load_images(visual, task_name)
            loaded.append(images)
            if self.interleave_visuals:
                turns.append(interleaved(context, images, f"task {task_name}, doc {doc_id}"))
            else:
                turns.append(images_first(context, images))
        texts = [self.chat_text_from_content(turn.content) for turn in turns]
        images = [turn.images for turn in turns]
        flat_images = [image for sequence_images in images for image in sequence_images]
        inputs = self.processor(
            text=texts, images=flat_images or None, padding=True, padding_side="left", return_tensors="pt"
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.torch_dtype)
        image_token_mask = inputs["input_ids"] == self.image_token_id
        counts = [len(sequence_images) for sequence_images in images]
        return PreparedBatch(
            contexts=contexts,
            images=images,
            doc_ids=doc_ids,
            task_names=task_names,
            inputs=inputs,
            image_token_mask=image_token_mask,
            image_grids=self.family.image_grids(self.processor, inputs, counts),
            visuals=loaded,
            image_regions=[self.family.image_regions(self.processor, [i.size for i in seq]) for seq in images],
        )

    def chat_text_from_content(self, content: list[dict]) -> str:
        """One user turn of image and text parts (and the optional system turn) through the chat template."""
        return render_user_turn(self.processor, content, self.system_prompt)

    def stop_strings(self, settings: GenerationSettings) -> list[str]:
        """The task's stop strings that generation must watch for (the end-of-turn token stops it anyway)."""
        end_of_turn = self.tokenizer.decode([self.eot_token_id])
        return [stop for stop in settings.until if stop and stop != end_of_turn]

    def check_settings(self, settings: GenerationSettings) -> None:
        """Refuse what this model cannot honour before any work is done."""
        if settings.num_beams > 1 and (self.STEERS or self.attention_logger is not None):
            raise ValueError(f"{self.MODEL_NAME}: {BEAMS_REFUSED}")

    def prompt_prefix(self, batch: PreparedBatch, keep_layer0_keys: bool = False) -> PromptPrefix | None:
        """The batch's first N - 1 positions computed once (vision tower included), or None where that cannot work.

        None comes with a one-line warning naming the cause (the first time); callers then run whole-prompt passes.
        """
        try:
            return compute_prefix(self.model, batch.inputs, self.family, keep_layer0_keys=keep_layer0_keys)
        except PrefixUnsupported as error:
            if not self._warned_prefix:
                logger.warning(f"{self.MODEL_NAME}: whole-prompt passes instead of a shared prefix: {error}")
                self._warned_prefix = True
            return None

    def steering(self, batch: PreparedBatch, method: Any = None, copies: int = 1) -> contextlib.AbstractContextManager:
        """The scoped state generation runs under: a method's last-row edits and the attention log's recording.

        ``copies``: the batch answered for that many settings at once (rows repeated setting-major, see
        ``PromptPrefix.expanded``). The baseline without ``attention_log`` runs unchanged (plain SDPA).
        """
        if copies > 1 and self.attention_logger is not None:
            raise ValueError(f"{self.MODEL_NAME}: the attention log records one setting at a time")
        recorder = self.attention_logger.start(method is not None) if self.attention_logger is not None else None
        if method is None and recorder is None:
            return contextlib.nullcontext()
        from interventions import SteeringState, steer

        observers = [recorder] if recorder is not None else []
        mask = batch.image_token_mask.repeat(copies, 1)
        return steer(self.model, SteeringState(mask, method=method, observers=observers))

    def respond_grid(
        self, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool = False
    ) -> list[Response]:
        """The batch's answers under each of ``points`` (the method's parameter objects), sharing what can be shared.

        The seam hyperparameter sweeps use; each intervention's ``respond`` is its one-point case, so a sweep and an
        evaluation run the same code. A neutral point takes ``qwen3vl``'s whole-prompt pass (bit for bit the
        baseline), or with ``share_neutral`` runs on the shared prefix with the other points (the same numerics as
        they, and no extra prefill: what a sweep wants). The baseline has no parameters.
        """
        raise NotImplementedError(f"{self.MODEL_NAME} has no parameters to vary")

    def generate_steered(
        self, batch: PreparedBatch, settings: GenerationSettings, prefix: PromptPrefix, method: Any, copies: int = 1
    ) -> Response:
        """Generation from the last position of ``prefix`` (already ``expanded(copies)``) under ``method``."""
        with self.steering(batch, method, copies=copies):
            return self.generate(batch, settings, prefix=prefix)

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """Answers for a batch; interventions override this to add passes or change inputs."""
        with self.steering(batch):
            return self.generate(batch, settings)

    @torch.inference_mode()
    def generate(
        self, batch: PreparedBatch, settings: GenerationSettings, prefix: PromptPrefix | None = None
    ) -> Response:
        """``model.generate`` on the batch, keeping the first step's raw logits.

        With ``prefix`` (from :meth:`prompt_prefix`) only the last prompt position and the answer are computed;
        the prefix is rewound afterwards, ready for another pass.
        """
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": settings.do_sample,
            "num_beams": settings.num_beams,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        stops = self.stop_strings(settings)
        if stops:  # each sequence stops at its first stop string; the others go on
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        if settings.do_sample:
            kwargs["temperature"] = settings.temperature
            if settings.top_p is not None:
                kwargs["top_p"] = settings.top_p
        else:  # silence the checkpoint's sampling defaults so greedy really is greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if prefix is None:
            output = self.model.generate(**batch.inputs, **kwargs)
        else:
            prefix.rewind(self.model)
            try:
                output = self.model.generate(**prefix.generation_inputs(), **kwargs)
            finally:
                prefix.rewind(self.model)
        prompt_length = batch.inputs["input_ids"].shape[1]
        generated = output.sequences[:, prompt_length:]
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        first_token_logits = output.logits[0].float()
        return Response(
            texts=texts,
            first_token_probs=torch.softmax(first_token_logits, dim=-1),
            first_token_logits=first_token_logits,
            generated_tokens=generated_lengths(generated, self.tokenizer.pad_token_id),
            extras=[{} for _ in texts],
        )

    @torch.inference_mode()
    def prefill_logits(self, batch: PreparedBatch) -> torch.Tensor:
        """Logits of the next token after the prompt, ``[B, V]``: one forward, no generation."""
        output = self.model(**batch.inputs, logits_to_keep=1, use_cache=False)
        return output.logits[:, -1].float()

    def finish_batch(self, batch: PreparedBatch, response: Response, texts: list[str]) -> None:
        """Called once per batch after answering; the attention log writes here."""
        if self.attention_logger is not None:
            self.attention_logger.write(batch, response, texts)


def generated_lengths(generated: torch.Tensor, pad_token_id: int | None) -> list[int]:
    """Tokens each sequence generated: ``generate`` pads a finished sequence's remaining steps."""
    if pad_token_id is None:
        return [generated.shape[1]] * generated.shape[0]
    real = (generated != pad_token_id).long()
    positions = torch.arange(1, generated.shape[1] + 1, device=generated.device)
    return (real * positions).max(dim=1).values.tolist()


def truncate_at_stops(text: str, stops: list[str]) -> str:
    """Cut an answer at the first of the task's stop strings (the final guard; generation already stops there)."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def load_images(visual: Any, task_name: str) -> list[Image.Image]:
    """A task's visuals as RGB images: PIL images or image file paths; videos are refused by name."""
    if visual is None:
        return []
    items = visual if isinstance(visual, (list, tuple)) else [visual]
    images = []
    for item in items:
        if isinstance(item, Image.Image):
            images.append(item.convert("RGB"))
        elif isinstance(item, (str, Path)) and Path(item).suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}:
            if not Path(item).is_file():
                raise FileNotFoundError(f"task {task_name}: image file not found: {item}")
            with Image.open(item) as image:
                images.append(image.convert("RGB"))
        else:
            raise NotImplementedError(
                f"task {task_name}: visual of type {type(item).__name__} ({str(item)[:80]!r}) is not supported; "
                "the models take images (PIL or file paths), not video or audio"
            )
    return images
