"""The seams a method may use: what a runner (``models.runner``) is given of the engine, and nothing else.

The engine (``models.engine.Engine``) implements :class:`MethodHost`; a runner is typed against it, never against the
engine, so the engine's callers' API (``answer``, ``respond``, ``finish``, ...) can change without touching a method,
and a method cannot reach past these seams into the evaluation around it (``tests/unit/models/test_host.py`` reads
every runner and fails on any other use). A new method that needs a new seam adds it here, with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from families import Family
from interventions.prefix import PromptPrefix
from models.batch import GenerationSettings, PreparedBatch, Response


@dataclass(frozen=True)
class Process:
    """Where this process stands among data-parallel ones (the adapter's accelerate state; one process elsewhere)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    wait: Callable[[], None] = field(default=lambda: None)  # every process waits here for rank 0 (VEA profiling)


ONE_PROCESS = Process()  # a command that runs alone (everything but the lmms-eval models under accelerate)


@dataclass(frozen=True)
class ProfileRequest:
    """What VEA's first-use layer profiling is asked for (``python -m profiling`` answers the same questions)."""

    model: str  # the checkpoint, as named in the record
    vsr_data_dir: str
    coco_annotations_dir: str
    dataset_type: str
    samples: int
    layer_top_fraction: float


# profiles a loaded engine's layers (``profiling.profile_host``); the engine's builder supplies it (``plugin``)
LayerProfiler = Callable[["MethodHost", ProfileRequest], dict]


@runtime_checkable
class MethodHost(Protocol):
    """A loaded checkpoint as a method sees it."""

    family: Family  # the model family's answers (positions, pre-RoPE modules, pixel layout, ...)
    model: torch.nn.Module  # the loaded model, on its steered attention when a method runs
    device: torch.device  # where the inputs go
    depth: int  # decoder layers of the language model (layer arguments are checked against it)
    rows_per_pass: int  # at most this many rows (sequences x settings) in one batched pass

    @property
    def logs_attention(self) -> bool:
        """Whether the attention log records this run (VEA then keeps its maps for it)."""
        ...

    def prepare(
        self, contexts: list[str], visuals: list[Any], doc_ids: list[int], task_names: list[str]
    ) -> PreparedBatch:
        """Contexts and visuals as a batch, as an evaluation prepares them (VEA's hint re-renders the prompts)."""
        ...

    def prompt_prefix(self, batch: PreparedBatch, keep_layer0_keys: bool = False) -> PromptPrefix | None:
        """The batch's first N - 1 positions computed once, or None where that cannot work (then: whole prompts)."""
        ...

    def steering(self, batch: PreparedBatch, editor: Any = None, copies: int = 1) -> contextlib.AbstractContextManager:
        """The scoped state a forward runs under: ``editor``'s last-row edits and the attention log's recording."""
        ...

    def image_free(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch's prompts without their images, as the chat template renders them (PAI's guidance)."""
        ...

    def generate(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        prefix: PromptPrefix | None = None,
        guidance: Any = None,
    ) -> Response:
        """``model.generate`` on the batch (or from ``prefix``), keeping the first step's logits; ``guidance``: a
        logits processor that refines every step's scores (PAI's image-free guidance)."""
        ...

    def generate_steered(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        prefix: PromptPrefix,
        editor: Any,
        copies: int = 1,
        guidance: Any = None,
    ) -> Response:
        """Generation from ``prefix`` (expanded ``copies`` times) under ``editor`` (and ``guidance``)."""
        ...

    def prefill_logits(self, batch: PreparedBatch) -> torch.Tensor:
        """The next token's logits after the prompt, ``[B, V]``, from one whole-prompt forward."""
        ...

    def profile_layers(self, request: ProfileRequest) -> dict:
        """VEA's layer profiling on this loaded model (the record ``python -m profiling`` writes)."""
        ...


def seams() -> set[str]:
    """Every member of :class:`MethodHost` (the test that reads the runners checks their uses against it)."""
    members = {name for name in vars(MethodHost) if not name.startswith("_")}
    return members | set(MethodHost.__annotations__)
