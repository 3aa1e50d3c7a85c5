"""The per-forward steering state and the protocol methods and observers implement.

Why a scoped state: the attention function is a plain function registered once
with transformers; it needs to know, for the forward now running, which keys
are image keys, which method (if any) edits the last row and who records it.
:func:`interventions.attention.steer` makes a :class:`SteeringState` visible to that function for the
duration of a ``with`` block only (a ``ContextVar``, reset on exit, so nothing
outlives the call and a second model or thread never sees it).

Usage::

    from interventions import SteeringState, steer, use_steered_attention

    use_steered_attention(model)              # once per loaded model
    state = SteeringState(image_mask=input_ids == model.config.image_token_id, method=AdaptVis(...))
    with steer(model, state):
        model.generate(**inputs)             # the prompt's last row is edited, decode steps are not

A *method* edits the last row (``edit(row) -> RowEdit | None``); an *observer*
(e.g. :class:`interventions.recording.LastRowRecorder`) sees the row before and
after the edit. Both act only in the forward that computes the prompt's last
position. This module imports nothing else of the package (``steer``, which checks
the model, lives in :mod:`interventions.attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import torch


@dataclass
class LastRow:
    """The last prompt row of one layer's attention, computed explicitly beside the fused kernel.

    ``scores`` are ``q_last . K^T * scaling`` (float32, GQA heads repeated), ``mask`` the additive mask of
    that row (0 where visible, -inf on padding); the softmax of their sum is what the fused kernel used.
    """

    layer: int
    scores: torch.Tensor  # [B, H, N] float32, before the mask
    mask: torch.Tensor  # [B, 1, N] float32 additive
    image_mask: torch.Tensor  # [B, N] bool
    module: Any  # the attention module (config, layer_idx, scaling)

    @cached_property
    def weights(self) -> torch.Tensor:
        """Softmax of the row as the model computes it: ``[B, H, N]``."""
        return torch.softmax(self.scores + self.mask, dim=-1)

    @cached_property
    def has_image(self) -> torch.Tensor:
        """``[B]`` bool: sequences with at least one image key (the others are never edited)."""
        return self.image_mask.any(dim=-1)


@dataclass
class RowEdit:
    """New last-row weights ``[B, H, N]`` (rows sum to 1) for the sequences where ``rows`` is True."""

    weights: torch.Tensor
    rows: torch.Tensor  # [B] bool


class RowEditor(Protocol):
    """An intervention on the prompt's last row."""

    def begin(self, state: SteeringState) -> None:
        """Called at layer 0 of each last-row forward: reset per-forward accumulators."""

    def edit(self, row: LastRow) -> RowEdit | None:
        """New weights for the last row of ``row.layer``, or None to leave it as the kernel computed it."""

    def hooks(self, model: torch.nn.Module, state: SteeringState) -> list:
        """Extra hooks (removable handles) to install while the state is active."""


class Observer(Protocol):
    """Sees every layer's last prompt row, before and after any edit."""

    def begin(self, state: SteeringState) -> None: ...

    def observe(self, row: LastRow, used: torch.Tensor, edited: torch.Tensor | None) -> None:
        """``used``: the weights the model used ``[B, H, N]``; ``edited``: ``[B]`` bool or None (no edit)."""


@dataclass
class SteeringState:
    """What the attention function needs to know about the forward now running.

    ``image_mask`` is ``[B, N]`` (True at image-token positions of the prompt, left padding included in N).
    The method and the observers act in **the forward that computes prompt position N - 1** (the "last-row
    forward"): its keys span exactly the N prompt positions. That is the whole-prompt prefill (N queries) or,
    when positions 0..N-2 were computed once beforehand (:mod:`interventions.prefix`), a one-token forward of
    the last position on their cache. Forwards over the prefix alone (N - 1 keys) and decode steps (more
    than N keys) are never touched.
    """

    image_mask: torch.Tensor
    method: RowEditor | None = None
    observers: list[Observer] = field(default_factory=list)
    prefills: int = 0  # last-row forwards seen (each edits at most once per layer)
    edited_layers: list[int] = field(default_factory=list)  # every layer the method edited, in order
    in_last_row_forward: bool = False  # set at layer 0 of every forward under this state

    def __post_init__(self) -> None:
        if not isinstance(self.image_mask, torch.Tensor) or self.image_mask.dim() != 2:
            raise ValueError("image_mask must be a [batch, seq_len] tensor")
        self.image_mask = self.image_mask.bool()

    @property
    def prompt_length(self) -> int:
        """N: the prompt's length, left padding included."""
        return self.image_mask.shape[1]

    @property
    def active(self) -> bool:
        """False when nothing would read or change the last row (then the attention is plain SDPA)."""
        return self.method is not None or bool(self.observers)

    def computes_last_row(self, query: torch.Tensor, key: torch.Tensor) -> bool:
        """Whether this attention call computes prompt position N - 1: its keys are exactly the N prompt positions."""
        batch, length = self.image_mask.shape
        if key.shape[2] != length or query.shape[2] < 1:
            return False
        if query.shape[0] != batch:
            raise ValueError(
                f"image_mask has batch {batch} but the forward has batch {query.shape[0]} "
                "(beam search, num_beams > 1, is not supported under steering or the attention log)"
            )
        return True

    def start_forward(self, last_row: bool) -> None:
        """Called at layer 0 of every forward: remember its kind, and reset the method and observers for a last row."""
        self.in_last_row_forward = last_row
        if not last_row:
            return
        self.prefills += 1
        if self.method is not None:
            self.method.begin(self)
        for observer in self.observers:
            observer.begin(self)


_ACTIVE: ContextVar[SteeringState | None] = ContextVar("vsr_steering_state", default=None)


def active_state() -> SteeringState | None:
    """The state of the ``steer`` block now running, if any."""
    return _ACTIVE.get()


@contextlib.contextmanager
def activate(state: SteeringState) -> Iterator[SteeringState]:
    """Make ``state`` the active one inside the block (``interventions.attention.steer`` adds the model checks)."""
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)
