"""AdaptVis (Chen et al., ICML 2025): confidence-gated scaling of the last row's image logits.

Pass 1 gives the confidence ``c`` (by default the top-1 probability of the first token; ``confidence_rule`` selects
the authors' code's definitions instead); pass 2 multiplies
the last row's pre-softmax logits on image keys by ``alpha`` (``smoothen_weight`` if
``c < confidence_threshold`` else ``sharpen_weight``, per sequence) in the selected
layers, before the additive mask, then softmax as usual. See docs/METHODS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from interventions.state import LastRow, RowEdit, SteeringState


@dataclass(frozen=True)
class AdaptVisParams:
    """The numbers that shape AdaptVis' answers (the defaults are the project's; the study's per split: presets)."""

    NEUTRAL: ClassVar[dict[str, float]] = {"sharpen_weight": 1.0, "smoothen_weight": 1.0}

    confidence_threshold: float = 0.8
    sharpen_weight: float = 1.2
    smoothen_weight: float = 0.2
    confidence_rule: str = "probability"

    def __post_init__(self) -> None:
        for name in ("confidence_threshold", "sharpen_weight", "smoothen_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.sharpen_weight < 0 or self.smoothen_weight < 0:
            raise ValueError("sharpen_weight and smoothen_weight must be >= 0")
        if self.confidence_rule not in CONFIDENCE_RULES:
            raise ValueError(
                f"confidence_rule must be one of {', '.join(CONFIDENCE_RULES)}, got {self.confidence_rule!r}"
            )

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        """Each sequence's confidence under :attr:`confidence_rule`, from the first token's logits ``[B, V]``."""
        return CONFIDENCE_RULES[self.confidence_rule](logits)

    @property
    def neutral(self) -> bool:
        """Both weights 1 (:attr:`NEUTRAL`): the method cannot change any answer."""
        return all(getattr(self, name) == value for name, value in self.NEUTRAL.items())

    def alphas(self, confidence: torch.Tensor) -> list[float]:
        """Per sequence ``alpha``: smoothen below the threshold, sharpen at or above it."""
        return [
            float(self.smoothen_weight) if float(c) < self.confidence_threshold else float(self.sharpen_weight)
            for c in confidence
        ]


def first_token_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 softmax probability of next-token logits ``[B, V]`` (a probability, not the raw max logit)."""
    return torch.softmax(logits.float(), dim=-1).max(dim=-1).values


def rounded(values: torch.Tensor, decimals: int = 2) -> torch.Tensor:
    """``numpy.round(values, decimals)`` in float64: scaled, rounded half to even, scaled back."""
    scale = 10.0**decimals
    return torch.round(values.double() * scale) / scale


# How the confidence is read from the first token's logits. ``probability``: the project's (the paper's text, a
# probability). The authors' code (shiqichen17/AdaptVis 3b41399, model_zoo/llava15.py) rounds to two decimals
# (np.round(..., 2)) and on WhatsUp takes the top-1 softmax probability (line 386) but on VSR the top-1 raw logit
# (output['scores'][0][0], line 522).
CONFIDENCE_RULES = {
    "probability": first_token_confidence,
    "probability_rounded": lambda logits: rounded(first_token_confidence(logits)),
    "max_logit_rounded": lambda logits: rounded(logits.float().max(dim=-1).values),
}


class AdaptVis:
    """Pass-2 method: scale image-key logits of the last row by a per-sequence ``alpha`` in ``layers``."""

    def __init__(self, alphas: Sequence[float] | torch.Tensor, layers: Sequence[int]) -> None:
        self.alphas = torch.as_tensor(alphas, dtype=torch.float32)
        self.layers = frozenset(int(layer) for layer in layers)

    def begin(self, state: SteeringState) -> None:
        self.alphas = self.alphas.to(state.image_mask.device)

    def hooks(self, model: torch.nn.Module, state: SteeringState) -> list:
        return []

    def edit(self, row: LastRow) -> RowEdit | None:
        if row.layer not in self.layers:
            return None
        if self.alphas.device != row.scores.device:  # a model sharded across GPUs: this layer's device
            self.alphas = self.alphas.to(row.scores.device)
        rows = row.has_image & (self.alphas != 1.0)
        if not bool(rows.any()):
            return None
        factor = torch.where(row.image_mask, self.alphas[:, None], torch.ones_like(self.alphas)[:, None])
        weights = torch.softmax(row.scores * factor[:, None, :] + row.mask, dim=-1)
        return RowEdit(weights=weights, rows=rows)
