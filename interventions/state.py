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
position, unless a method says it edits more: ``edits_decode_rows`` (PAI: every
decoding step's row is handed to ``edit`` too) or ``attend(call)`` (VAF: computes
any attention call of the prompt or a decoding step itself, in fused form). This module
imports nothing else of the package (``steer``, which checks the model, lives in
:mod:`interventions.attention`).
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
    decoding: bool = False  # a decoding step's row (keys: the prompt and the tokens generated so far), not the prompt's

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
    """New last-row weights ``[B, H, N]`` (rows sum to 1) for the sequences where ``rows`` is True (``on_host``: the
    same as a list, when the method knows it without the device, so that the attention need not wait to read it)."""

    weights: torch.Tensor
    rows: torch.Tensor  # [B] bool
    on_host: list[bool] | None = None

    def any(self) -> bool:
        return any(self.on_host) if self.on_host is not None else bool(self.rows.any())

    def all(self) -> bool:
        return all(self.on_host) if self.on_host is not None else bool(self.rows.all())


@dataclass
class AttentionCall:
    """One attention call of a steered forward, for a method that edits more than the prompt's last row.

    Query rows are the last ``q_len`` of the ``K`` key positions (the prompt: ``q_len == K == N``; a decoding step:
    ``q_len == 1``, ``K > N``). The image keys are the method's to know (VAF reads them from the batch once).
    """

    layer: int
    module: Any
    query: torch.Tensor  # [B, H, q_len, D]
    key: torch.Tensor  # [B, H_kv, K, D]
    value: torch.Tensor  # [B, H_kv, K, D]
    attention_mask: torch.Tensor | None  # as the fused kernel takes it
    scaling: float | None
    kwargs: dict

    @property
    def first_position(self) -> int:
        """The position of the first query row among the keys."""
        return self.key.shape[2] - self.query.shape[2]


class RowEditor(Protocol):
    """An intervention on the prompt's last row.

    Optionally:

    - ``edits_decode_rows = True`` hands every decoding step's row to :meth:`edit` as well (a :class:`LastRow` with
      ``decoding`` set);
    - ``edits_layer(layer: int, decoding: bool) -> bool``: False where :meth:`edit` would return None whatever the
      row, decided without tensors, so that the row is not recomputed there (PAI's and VAF's layers outside their
      range);
    - ``attend(call: AttentionCall) -> output | None`` computes a call of the prompt's forward or a decoding step in
      place of the fused kernel (``[B, q_len, H, D]``, as ``sdpa_attention_forward`` returns it), or returns None to
      leave it to the kernel; it runs before the last row is handed to :meth:`edit`.
    """

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
    in_decode_forward: bool = False  # a decoding step (one query row after the prompt), set at layer 0 too
    _keys_masks: dict = field(default_factory=dict, repr=False)  # keys_image_mask of the forward now running

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

    @property
    def follows_decoding(self) -> bool:
        """Whether the method acts in decoding steps too (PAI's rows, VAF's fused calls), not only in the forward of
        the prompt's last row."""
        return bool(getattr(self.method, "edits_decode_rows", False)) or hasattr(self.method, "attend")

    def computes_last_row(self, query: torch.Tensor, key: torch.Tensor) -> bool:
        """Whether this attention call computes prompt position N - 1: its keys are exactly the N prompt positions."""
        batch, length = self.image_mask.shape
        if key.shape[2] != length or query.shape[2] < 1:
            return False
        self._check_batch(query)
        return True

    def decodes(self, query: torch.Tensor, key: torch.Tensor) -> bool:
        """Whether this attention call is a decoding step after the prompt: one query row over more than N keys."""
        if query.shape[2] != 1 or key.shape[2] <= self.prompt_length:
            return False
        self._check_batch(query)
        return True

    def _check_batch(self, query: torch.Tensor) -> None:
        batch = self.image_mask.shape[0]
        if query.shape[0] != batch:
            raise ValueError(
                f"image_mask has batch {batch} but the forward has batch {query.shape[0]} "
                "(beam search, num_beams > 1, is not supported under steering or the attention log)"
            )

    def keys_image_mask(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """``[B, length]``: the prompt's image mask over ``length`` keys (the tokens generated after it are text), on
        ``device`` (kept for the forward's other layers: a decoding step asks once per layer)."""
        device = self.image_mask.device if device is None else torch.device(device)
        cached = self._keys_masks.get((length, device))
        if cached is not None:
            return cached
        extra = length - self.prompt_length
        if extra <= 0:
            mask = self.image_mask[:, :length]
        else:
            mask = torch.nn.functional.pad(self.image_mask, (0, extra), value=False)
        mask = mask.to(device)
        self._keys_masks[(length, device)] = mask
        return mask

    def start_forward(self, last_row: bool, decoding: bool = False) -> None:
        """Called at layer 0 of every forward: remember its kind, and reset the method and observers for a last row."""
        self.in_last_row_forward = last_row
        self.in_decode_forward = decoding
        self._keys_masks.clear()
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
def suspended() -> Iterator[None]:
    """No state inside the block: forwards run there are plain (PAI's image-free pass during a steered generation)."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def activate(state: SteeringState) -> Iterator[SteeringState]:
    """Make ``state`` the active one inside the block (``interventions.attention.steer`` adds the model checks)."""
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)
