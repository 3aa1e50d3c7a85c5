"""The engine: one loaded checkpoint answering prepared batches, with or without a method. No lmms-eval here.

Why one engine: an evaluation (``plugin.vlm``), a sweep (``sweep``), the viewer's live re-run (``analysis.live``) and
the cost benchmarks must answer a batch with exactly the same code, or their numbers drift apart. The engine owns
everything that is not a method's own math, in the order a batch meets it:

- :meth:`Engine.prepare`: contexts and visuals -> a :class:`PreparedBatch` (chat template, processor, left padding,
  the image-token mask, each image's token grid);
- :meth:`Engine.answer`: the batch under one or many settings of the method (``points``); the method's runner
  (``models.runner``) decides how, on the shared prefix (:meth:`prompt_prefix`) where it can;
- :meth:`Engine.generate`: ``model.generate`` on the batch or from a prefix, keeping the first step's logits;
- :meth:`Engine.steering`: the scoped state a forward runs under (a method's row edit, the attention log's recorder);
- :meth:`Engine.finish`: the attention log writes the batch's records.

The seams a method's runner may use are :class:`~models.host.MethodHost`'s, which the engine implements; the rest is
its callers' API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from loguru import logger
from transformers import LogitsProcessorList
from transformers.cache_utils import DynamicCache

from families.turns import images_first, interleaved, render_user_turn
from interventions.prefix import PrefixUnsupported, PromptPrefix, compute_prefix
from interventions.state import active_state
from models.batch import GenerationSettings, PreparedBatch, Response, generated_lengths, load_images
from models.checkpoint import Checkpoint
from models.host import LayerProfiler, MethodHost, ProfileRequest

BEAMS_REFUSED = "beam search, num_beams > 1, is not supported under steering or the attention log"
ROWS_PER_PASS = 64  # at most this many rows (sequences x settings) in one steered pass, unless told otherwise


class Engine(MethodHost):
    """A loaded checkpoint, its method's runner (None: the baseline) and where the attention log goes (None: off)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        model: torch.nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        method: Any = None,
        attention_log: Any = None,
        system_prompt: str | None = None,
        interleave_visuals: bool = False,
        name: str = "",
        rows_per_pass: int = ROWS_PER_PASS,
        layer_profiler: LayerProfiler | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.family = checkpoint.family
        self.processor = checkpoint.processor
        self.model = model
        self.device = device
        self.dtype = dtype
        self.method = method
        self.attention_log = attention_log
        self.system_prompt = system_prompt
        self.interleave_visuals = interleave_visuals
        self.name = name
        if rows_per_pass < 1:
            raise ValueError(f"{name}: rows_per_pass must be at least 1, got {rows_per_pass}")
        self.rows_per_pass = rows_per_pass
        self.layer_profiler = layer_profiler
        self.image_token_id = self.family.image_token_id(model)
        self.depth = checkpoint.depth  # decoder layers of the language model
        self._warned_prefix = False
        if method is not None or attention_log is not None:
            self.use_steered_attention()

    def use_steered_attention(self) -> None:
        """The text attention on the steered SDPA (a method, the attention log and VEA's profiling record through
        it); the plain baseline keeps the checkpoint's own."""
        from interventions import use_steered_attention

        use_steered_attention(self.model)

    @property
    def logs_attention(self) -> bool:
        return self.attention_log is not None

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    # ------------------------------------------------------------------ preparing
    def prepare(
        self, contexts: list[str], visuals: list[Any], doc_ids: list[int], task_names: list[str]
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
        texts = [render_user_turn(self.processor, turn.content, self.system_prompt) for turn in turns]
        images = [turn.images for turn in turns]
        # per sequence, not one flat list: Gemma-3's processor assigns a flat list's images to its texts wrongly
        inputs = self.processor(
            text=texts, images=images if any(images) else None, padding=True, padding_side="left", return_tensors="pt"
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        counts = [len(sequence_images) for sequence_images in images]
        return PreparedBatch(
            contexts=contexts,
            images=images,
            doc_ids=doc_ids,
            task_names=task_names,
            inputs=inputs,
            image_token_mask=inputs["input_ids"] == self.image_token_id,
            image_tokens=self.family.image_tokens(self.processor, inputs, counts),
            visuals=loaded,
            image_regions=[self.family.image_regions(self.processor, [i.size for i in seq]) for seq in images],
        )

    # ------------------------------------------------------------------ answering
    def check(self, settings: GenerationSettings) -> None:
        """Refuse what the engine cannot honour before any work is done."""
        steers = self.method is not None and self.method.steers
        if settings.num_beams > 1 and (steers or self.attention_log is not None):
            raise ValueError(f"{self.name}: {BEAMS_REFUSED}")

    def answer(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        points: list | None = None,
        share_neutral: bool = False,
    ) -> list[Response]:
        """The batch's answers under each of ``points`` (the method's parameter objects; None: its own setting).

        ``share_neutral``: a neutral point runs on the shared prefix with the others (a sweep's paired baseline, no
        extra prefill) instead of the plain whole-prompt pass that equals the baseline bit for bit.
        """
        self.check(settings)
        if self.method is None:
            if points not in (None, [None]):
                raise ValueError(f"{self.name} has no parameters to vary")
            with self.steering(batch):
                return [self.generate(batch, settings)]
        return self.method.answer(
            self, batch, settings, list(points or self.method.default_points(batch)), share_neutral
        )

    def respond(self, batch: PreparedBatch, settings: GenerationSettings, point: Any = None) -> Response:
        """One setting's answers (default: the method's own)."""
        return self.answer(batch, settings, None if point is None else [point])[0]

    def answer_whole_prompt(self, batch: PreparedBatch, settings: GenerationSettings, point: Any = None) -> Response:
        """The method's fallback without a shared prefix (whole-prompt passes): what the prefix path must equal."""
        if self.method is None:
            return self.respond(batch, settings)
        self.check(settings)
        return self.method.whole_prompt(
            self, batch, settings, point if point is not None else self.method.default_points(batch)[0]
        )

    def finish(self, batch: PreparedBatch, response: Response, texts: list[str]) -> None:
        """After a batch is answered: the attention log writes its records."""
        if self.attention_log is not None:
            self.attention_log.write(batch, response, texts)

    def attach_attention_log(self, writer: Any) -> None:
        """Record every answer from now on with ``writer`` (``models.attention_log``; None: off)."""
        self.attention_log = writer
        if writer is not None:
            self.use_steered_attention()

    @contextlib.contextmanager
    def logging_to(self, writer: Any) -> Iterator[Engine]:
        """The attention log pointed at ``writer`` for the block (the viewer's live re-runs), then put back."""
        previous = self.attention_log
        self.attach_attention_log(writer)
        try:
            yield self
        finally:
            self.attention_log = previous

    # ------------------------------------------------------------------ the seams a method uses (MethodHost)
    def profile_layers(self, request: ProfileRequest) -> dict:
        """VEA's layer profiling on this model, by the profiler this engine's builder supplied (``plugin``)."""
        if self.layer_profiler is None:
            raise ValueError(
                f"{self.name}: profiling VEA's layers on first use needs the layer profiler, which the lmms-eval "
                "models and the commands supply (plugin.engine_for); give layers=... or layers_file=... here"
            )
        self.use_steered_attention()
        return self.layer_profiler(self, request)

    def steering(self, batch: PreparedBatch, editor: Any = None, copies: int = 1) -> contextlib.AbstractContextManager:
        """The scoped state generation runs under: a method's last-row edits and the attention log's recording.

        ``copies``: the batch answered for that many settings at once (rows repeated setting-major, see
        ``PromptPrefix.expanded``). The baseline without the attention log runs unchanged (plain SDPA).
        """
        if copies > 1 and self.attention_log is not None:
            raise ValueError(f"{self.name}: the attention log records one setting at a time")
        recorder = self.attention_log.start(editor is not None) if self.attention_log is not None else None
        if editor is None and recorder is None:
            return contextlib.nullcontext()
        from interventions import SteeringState, steer

        observers = [recorder] if recorder is not None else []
        mask = batch.image_token_mask.repeat(copies, 1)
        return steer(self.model, SteeringState(mask, method=editor, observers=observers))

    def prompt_prefix(self, batch: PreparedBatch, keep_layer0_keys: bool = False) -> PromptPrefix | None:
        """The batch's first N - 1 positions computed once (vision tower included), or None where that cannot work.

        None comes with a one-line warning naming the cause (the first time); callers then run whole-prompt passes.
        """
        try:
            return compute_prefix(self.model, batch.inputs, self.family, keep_layer0_keys=keep_layer0_keys)
        except PrefixUnsupported as error:
            if not self._warned_prefix:
                logger.warning(f"{self.name}: whole-prompt passes instead of a shared prefix: {error}")
                self._warned_prefix = True
            return None

    def stop_strings(self, settings: GenerationSettings) -> list[str]:
        """The task's stop strings that generation must watch for (the end-of-turn token stops it anyway)."""
        end_of_turn = self.tokenizer.decode([self.tokenizer.eos_token_id])
        return [stop for stop in settings.until if stop and stop != end_of_turn]

    def generate_steered(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        prefix: PromptPrefix,
        editor: Any,
        copies: int = 1,
        guidance: Any = None,
    ) -> Response:
        """Generation from the last position of ``prefix`` (already ``expanded(copies)``) under ``editor``."""
        with self.steering(batch, editor, copies=copies):
            return self.generate(batch, settings, prefix=prefix, guidance=guidance)

    def image_free(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch's prompts without their images (placeholders removed), as the same chat template renders them."""
        turns = [images_first(context, []) for context in batch.contexts]
        texts = [render_user_turn(self.processor, turn.content, self.system_prompt) for turn in turns]
        inputs = self.processor(text=texts, padding=True, padding_side="left", return_tensors="pt").to(self.device)
        return PreparedBatch(
            contexts=batch.contexts,
            images=[[] for _ in batch.contexts],
            doc_ids=batch.doc_ids,
            task_names=batch.task_names,
            inputs=inputs,
            image_token_mask=inputs["input_ids"] == self.image_token_id,
            image_tokens=[[] for _ in batch.contexts],
            visuals=[[] for _ in batch.contexts],
            image_regions=[[] for _ in batch.contexts],
        )

    @torch.inference_mode()
    def generate(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        prefix: PromptPrefix | None = None,
        guidance: Any = None,
    ) -> Response:
        """``model.generate`` on the batch, keeping the first step's logits (raw; with ``guidance``, a logits processor
        that chooses the tokens, its scores).

        With ``prefix`` (from :meth:`prompt_prefix`) only the last prompt position and the answer are computed;
        the prefix is rewound afterwards, ready for another pass.
        """
        tokenizer = self.tokenizer
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": settings.do_sample,
            "num_beams": settings.num_beams,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        stops = self.stop_strings(settings)
        if stops:  # each sequence stops at its first stop string; the others go on
            kwargs.update(stop_strings=stops, tokenizer=tokenizer)
        if settings.do_sample:
            kwargs["temperature"] = settings.temperature
            if settings.top_p is not None:
                kwargs["top_p"] = settings.top_p
        else:  # silence the checkpoint's sampling defaults so greedy really is greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if guidance is not None:
            kwargs.update(logits_processor=LogitsProcessorList([guidance]), output_scores=True)
        state = active_state()
        if prefix is None and state is not None and state.follows_decoding:
            # every layer keeps every key, so that a decoding step's keys are positions 0..K-1 in every layer (a
            # sliding-window layer's own cache keeps only its window; the mask hides the rest all the same)
            kwargs["cache"] = DynamicCache()
        if prefix is None:
            output = self.model.generate(**batch.inputs, **kwargs)
        else:
            prefix.rewind(self.model)
            try:
                output = self.model.generate(**prefix.generation_inputs(), **kwargs)
            finally:
                prefix.rewind(self.model)
        generated = output.sequences[:, batch.inputs["input_ids"].shape[1] :]
        first_token_logits = (output.scores if guidance is not None else output.logits)[0].float()
        return Response(
            texts=self.processor.batch_decode(generated, skip_special_tokens=True),
            first_token_probs=torch.softmax(first_token_logits, dim=-1),
            first_token_logits=first_token_logits,
            generated_tokens=generated_lengths(generated, tokenizer.pad_token_id),
            extras=[{} for _ in range(generated.shape[0])],
        )

    @torch.inference_mode()
    def prefill_logits(self, batch: PreparedBatch) -> torch.Tensor:
        """Logits of the next token after the prompt, ``[B, V]``: one forward, no generation, at the positions
        ``generate`` uses."""
        positions = self.family.forward_positions(batch.inputs)
        output = self.model(**batch.inputs, **positions, logits_to_keep=1, use_cache=False)
        return output.logits[:, -1].float()
