"""PAI (Liu, Zheng, Chen, "Paying More Attention to Image", ECCV 2024): image logits amplified, guided by an
image-free pass.

Two parts, each optional (docs/METHODS.md):

- **the attention edit**: in layers ``[start_layer, end_layer)`` the query row of the token being chosen (the prompt's
  last row, then every decoding step's row) has its pre-softmax logits on image keys ``a`` replaced by
  ``a + alpha * |a|`` (LALBJ/PAI 9bbd8bd ``attention.py:91-94``, after the mask, ``attention.py:72-75``, before the
  softmax, ``attention.py:97``; every head). The row is recomputed beside the fused kernel (O(N) per layer, no eager
  attention) and its output replaced, as for AdaptVis.
- **the guidance** (their ``CFG.py``): the next token's log-probabilities ``s`` are refined against those ``u`` of the
  same prompt without its image, ``gamma * (s - u) + u`` (``CFG.py:54-56``); tokens whose conditional probability is
  below :data:`PLAUSIBILITY_CUTOFF` of the top one are excluded (``CFG.py:53,57``). ``gamma = 1`` is no guidance
  (``CFG.py:30-31``). The image-free pass is never edited.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from interventions.layers import check_layer_range, layer_range
from interventions.state import LastRow, RowEdit, SteeringState

# tokens below this share of the top token's conditional probability are excluded from the guided choice
# (LALBJ/PAI 9bbd8bd CFG.py:53, a constant there)
PLAUSIBILITY_CUTOFF = 0.1


@dataclass(frozen=True)
class PAIParams:
    """The numbers that shape PAI's answers; defaults: the authors' README command (LALBJ/PAI 9bbd8bd README.md:65,82,
    the same for POPE and CHAIR on every model)."""

    NEUTRAL: ClassVar[dict[str, float]] = {"alpha": 0.0, "gamma": 1.0}

    alpha: float = 0.2  # README.md:65 --alpha 0.2 (pope_eval.py:50's default too)
    gamma: float = 1.1  # README.md:65 --gamma 1.1 (pope_eval.py:53's default is 2)
    start_layer: int = 2  # README.md:65 --start-layer 2
    end_layer: int | None = None  # README.md:65 --end-layer 32, LLaVA-1.5-7B's depth; None: the model's depth
    edit_first_token: bool = True  # the paper; False: the authors' code with guidance (docs/METHODS.md)

    def __post_init__(self) -> None:
        for name, allowed in (("alpha", ">= 0 (0: no attention edit)"), ("gamma", ">= 0 (1: no guidance)")):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not number or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
        check_layer_range(self.start_layer, self.end_layer)
        if not isinstance(self.edit_first_token, bool):
            raise ValueError(f"edit_first_token must be true or false, got {self.edit_first_token!r}")

    @property
    def neutral(self) -> bool:
        """No edit and no guidance (:attr:`NEUTRAL`): the method cannot change any answer."""
        return all(getattr(self, name) == value for name, value in self.NEUTRAL.items())

    @property
    def guided(self) -> bool:
        return self.gamma != 1

    def layers(self, depth: int) -> range:
        """The edited layers of a model ``depth`` layers deep (refused by name when the range leaves the model)."""
        return layer_range(self.start_layer, self.end_layer, depth)


class PAI:
    """The attention edit for a batch of rows (sequences x settings), each with its own ``alpha`` and layer range."""

    edits_decode_rows = True  # every decoding step's row too, not only the prompt's last

    def __init__(
        self,
        alphas: Sequence[float],
        layers: Sequence[range],
        edit_first_token: Sequence[bool],
    ) -> None:
        self.alphas = [float(alpha) for alpha in alphas]
        self.layers = [range(layer.start, layer.stop) for layer in layers]
        self.edit_first_token = [bool(first) for first in edit_first_token]
        if not len(self.alphas) == len(self.layers) == len(self.edit_first_token):
            raise ValueError("PAI needs one alpha, layer range and edit_first_token per row")
        self._tensors: dict = {}  # (layer, decoding, device) -> (rows [B] bool, alphas [B]), once per generation
        self._has_image: list[bool] | None = None  # per sequence, read from the device once per generation

    def _rows(self, layer: int, decoding: bool) -> list[bool]:
        """Per row, on the host: whether ``layer`` of this forward is edited (images aside)."""
        return [
            alpha != 0 and layer in layers and (decoding or first)
            for alpha, layers, first in zip(self.alphas, self.layers, self.edit_first_token, strict=True)
        ]

    def edits_layer(self, layer: int, decoding: bool) -> bool:
        """Whether any row may be edited in ``layer`` (no tensor touched: a decoding step asks once per layer)."""
        return any(self._rows(layer, decoding))

    def begin(self, state: SteeringState) -> None:
        """A new prompt's forward: its sequences' images are read again at the first edit."""
        self._has_image = None
        self._tensors.clear()

    def hooks(self, model: torch.nn.Module, state: SteeringState) -> list:
        return []

    def edit(self, row: LastRow) -> RowEdit | None:
        if self._has_image is None:
            self._has_image = row.has_image.tolist()
        on_host = [edited and image for edited, image in zip(self._rows(row.layer, row.decoding), self._has_image)]
        if not any(on_host):
            return None
        device = row.scores.device  # a model sharded across GPUs: this layer's device
        key = (row.layer, row.decoding, device)
        if key not in self._tensors:
            self._tensors[key] = (torch.tensor(on_host, device=device), torch.tensor(self.alphas, device=device))
        rows, alphas = self._tensors[key]
        amplified = row.scores + alphas[:, None, None] * row.scores.abs()
        scores = torch.where(row.image_mask[:, None, :], amplified, row.scores)
        return RowEdit(weights=torch.softmax(scores + row.mask, dim=-1), rows=rows, on_host=on_host)


def guided_scores(conditional: torch.Tensor, unconditional: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """The next token's scores ``[R, V]`` guided against the image-free pass: ``gamma * (s - u) + u`` over
    log-softmaxed scores, tokens below :data:`PLAUSIBILITY_CUTOFF` of the top conditional probability at ``-inf``;
    rows with ``gamma == 1`` keep their conditional scores as they are."""
    conditional = conditional.float()
    s = torch.log_softmax(conditional, dim=-1)
    u = torch.log_softmax(unconditional.float(), dim=-1)
    gammas = gammas.to(s.device, torch.float32)[:, None]
    guided = gammas * (s - u) + u
    cutoff = math.log(PLAUSIBILITY_CUTOFF) + s.max(dim=-1, keepdim=True).values
    guided = guided.masked_fill(s < cutoff, float("-inf"))
    return torch.where(gammas == 1, conditional, guided)
