"""VAF, Visual Amplification Fusion (Yin et al., "ClearSight", CVPR 2025): in middle layers, every query row after the
image attends more to the image and less to what precedes it.

In layers ``[start_layer, end_layer)`` each query row after the sequence's (last) image, the prompt's text after it
and then every decoding step's row, multiplies its pre-softmax logits on image keys by ``enh_para`` and on the keys
before the (first) image by ``sup_para``, before the mask is added (ustc-hyin/ClearSight 5466c94
``visaug/inference/AttnAdapter.py:68-79``: ``q k^T / sqrt(d)``, then the two products, then the mask at lines 87-92;
every head). The authors hard-code those spans for LLaVA-1.5's template (``SYS_LEN = 35``, BOS and the system prompt
and ``USER:``; ``IMG_LEN = 576``, lines 71-72); here they come from each sequence's image mask: the image keys are its
image tokens, the suppressed keys every position before its first one (the chat template's opening, its system prompt
when it has one).

Why it can stay fused: multiplying the logits of one key by a constant is ``q . (c k)``, the same attention with that key
scaled. In the edited layers the fused kernel runs in two parts, the rows up to the image on the keys as they are and
the rows after it (the question's, then each decoding step's) on the scaled keys: the work of one fused call, no eager
attention, no N x N weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from interventions.layers import check_layer_range, layer_range
from interventions.state import AttentionCall, LastRow, RowEdit, SteeringState

NO_ROW = 2**62  # "after the image" of a sequence without one: no row ever is


@dataclass(frozen=True)
class VAFParams:
    """The numbers that shape VAF's answers; defaults: the authors' POPE command (ustc-hyin/ClearSight 5466c94
    README.md:93-95, visaug/inference/infer_pope.sh:6-8) and their layers (visaug/inference/infer_pope.py:52-58,
    ``if i > 8 and i < 15``)."""

    NEUTRAL: ClassVar[dict[str, float]] = {"enh_para": 1.0, "sup_para": 1.0}

    enh_para: float = 1.15  # README.md:94 --enh-para 1.15 (infer_pope.py:41's default, 1, changes nothing)
    sup_para: float = 0.95  # README.md:95 --sup-para 0.95 (infer_pope.py:42's default is 1)
    start_layer: int = 9  # visaug/inference/infer_pope.py:54, i > 8
    end_layer: int | None = 15  # infer_pope.py:54, i < 15: layers 9-14 of LLaVA-1.5's 32 (13B: of 40)

    def __post_init__(self) -> None:
        for name in ("enh_para", "sup_para"):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not number or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0 (1: no change), got {value!r}")
        check_layer_range(self.start_layer, self.end_layer)

    @property
    def neutral(self) -> bool:
        """Both factors 1 (:attr:`NEUTRAL`): the method cannot change any answer."""
        return all(getattr(self, name) == value for name, value in self.NEUTRAL.items())

    def layers(self, depth: int) -> range:
        """The edited layers of a model ``depth`` layers deep (refused by name when the range leaves the model)."""
        return layer_range(self.start_layer, self.end_layer, depth)


@dataclass(frozen=True)
class Spans:
    """Per sequence: which prompt keys are image keys and which come before the first image, and the first row after
    the last image (``NO_ROW`` without an image)."""

    image: torch.Tensor  # [B, N] bool
    before_image: torch.Tensor  # [B, N] bool
    first_row: torch.Tensor  # [B] long

    @classmethod
    def of(cls, image_mask: torch.Tensor) -> Spans:
        image = image_mask.bool()
        length = image.shape[1]
        has_image = image.any(dim=-1)
        positions = torch.arange(length, device=image.device)
        first = torch.where(has_image, image.int().argmax(dim=-1), length)
        last = length - 1 - image.flip(-1).int().argmax(dim=-1)
        before = (positions[None] < first[:, None]) & has_image[:, None]
        return cls(image, before, torch.where(has_image, last + 1, NO_ROW))


class VAF:
    """VAF for a batch of rows, each with its own factors and layer range (``attend``: every edited row in fused form;
    ``edit``: the prompt's last row again, explicitly, for the attention log)."""

    def __init__(
        self, enh: Sequence[float], sup: Sequence[float], layers: Sequence[range], image_mask: torch.Tensor
    ) -> None:
        self.spans = Spans.of(image_mask)
        enh_t = torch.as_tensor(enh, dtype=torch.float32, device=image_mask.device)[:, None]
        sup_t = torch.as_tensor(sup, dtype=torch.float32, device=image_mask.device)[:, None]
        ones = torch.ones_like(enh_t)
        self.factors = torch.where(self.spans.image, enh_t, torch.where(self.spans.before_image, sup_t, ones))
        # on the host, read once: each sequence's first edited row and layers, so that no layer waits on the device
        self.first_rows: list[int] = self.spans.first_row.tolist()
        self.layers = [range(layer.start, layer.stop) for layer in layers]
        self.changes = [(e, s) != (1, 1) for e, s in zip(enh, sup, strict=True)]

    def begin(self, state: SteeringState) -> None:
        """Nothing per forward: the spans are the prompt's."""

    def hooks(self, model: torch.nn.Module, state: SteeringState) -> list:
        return []

    def active(self, layer: int) -> list[bool]:
        """Per sequence: whether VAF edits its rows after the image in ``layer`` (an image, factors that change
        something, the layer in its range)."""
        return [
            change and layer in layers and first_row < NO_ROW
            for change, layers, first_row in zip(self.changes, self.layers, self.first_rows, strict=True)
        ]

    def edits_layer(self, layer: int, decoding: bool) -> bool:
        """Whether any row may be edited in ``layer`` (no tensor touched): elsewhere the last row is not recomputed."""
        return any(self.active(layer))

    def key_factors(self, length: int, device: torch.device) -> torch.Tensor:
        """``[B, length]``: each key's factor (generated tokens: 1)."""
        factors = self.factors.to(device)
        return torch.nn.functional.pad(factors, (0, max(0, length - factors.shape[1])), value=1.0)[:, :length]

    def attend(self, call: AttentionCall) -> torch.Tensor | None:
        """The call computed by the fused kernel in two parts: the rows up to each sequence's image with the keys as
        they are, the rows after it with the image and preceding keys scaled (``[B, q_len, H, D]``); None where no
        row of the call is edited."""
        active = self.active(call.layer)
        if not any(active):
            return None
        length, first_position, device = call.key.shape[2], call.first_position, call.query.device
        first_edited = min(first_row for first_row, edited in zip(self.first_rows, active) if edited)
        start = max(first_edited, first_position)  # the first edited row's position
        if start >= length:
            return None
        edited = torch.tensor(active, device=device)
        factors = torch.where(edited[:, None], self.key_factors(length, device), 1.0)
        # the product in float32, rounded once into the model's dtype (bfloat16 cannot hold 1.15 itself)
        scaled = (call.key.float() * factors[:, None, :, None]).to(call.key.dtype)
        tail = _fused(call, start, length, scaled)
        if not all(on and first_row <= start for on, first_row in zip(active, self.first_rows)):
            # a sequence whose image ends later, or one left as it is, in the same batch: its own rule per row
            positions = torch.arange(start, length, device=device)
            first_row = torch.tensor(self.first_rows, device=device)
            chosen = edited[:, None] & (positions[None] >= first_row[:, None])  # [B, tail rows]
            tail = torch.where(chosen[:, :, None, None], tail, _fused(call, start, length, call.key))
        if start == first_position:
            return tail
        head = _fused(call, first_position, start, call.key)  # the rows before: keys up to their own position
        return torch.cat([head, tail], dim=1)

    def edit(self, row: LastRow) -> RowEdit | None:
        """The prompt's last row with the scaled logits (what ``attend`` computed fused), for the observers."""
        length = row.scores.shape[-1]
        active = [on and first_row <= length - 1 for on, first_row in zip(self.active(row.layer), self.first_rows)]
        if not any(active):
            return None
        scores = row.scores * self.key_factors(length, row.scores.device)[:, None, :]
        rows = torch.tensor(active, device=row.scores.device)
        return RowEdit(weights=torch.softmax(scores + row.mask, dim=-1), rows=rows, on_host=active)


def _fused(call: AttentionCall, start: int, stop: int, key: torch.Tensor) -> torch.Tensor:
    """The fused kernel on the call's query rows at positions ``start..stop-1``: ``[B, stop - start, H, D]``. With the
    call's mask, over every key (Gemma-3's image rows see the image's later keys); causal without one, over the keys up
    to ``stop``."""
    rows = slice(start - call.first_position, stop - call.first_position)
    keys = call.key.shape[2]
    if call.attention_mask is not None:
        mask = call.attention_mask[:, :, rows, :keys]
    elif start == 0 or stop - start == 1:
        keys, mask = stop, None  # causal from position 0 (the kernel's own flag aligns it), or one row seeing all
    else:  # the kernel's ``is_causal`` aligns a block of rows at the top left: explicit causal rows instead
        keys = stop
        positions = torch.arange(start, stop, device=key.device)
        mask = (torch.arange(stop, device=key.device)[None, :] <= positions[:, None])[None, None]
    output, _ = sdpa_attention_forward(
        call.module,
        call.query[:, :, rows],
        key[:, :, :keys],
        call.value[:, :, :keys],
        mask,
        scaling=call.scaling,
        **call.kwargs,
    )
    return output
