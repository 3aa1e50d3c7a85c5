"""CLVS: Cross-Layer Vision Smoothing (Zhao et al., arXiv 2509.12897), on the prefill's last row.

1. Layer 0: the last row recomputed with position-unbiased positions (every visual token of an image at that
   image's first token's position, later text shifted down so each image takes one position; under M-RoPE the
   first token's (t, h, w), under 1-D RoPE its one index) replaces the row; memory ``m`` = max over heads of its
   image part.
2. Layers >= 1 while smoothing is on: ``w_I <- s * w_I + (1 - s) * m``, row renormalised.
3. After each layer ``m <- r * m + (1 - r) * max_heads(w_I)`` with the *unsmoothed* ``w_I``.
4. After each layer ``l > L // 2``: logit lens at the last position (final norm by default);
   normalised entropy of the top-10 softmax below ``uncertainty_threshold`` turns smoothing
   off for the later layers of that sequence.

Exactness of step 1: the attention function only sees post-RoPE q/k, so layer 0's pre-RoPE queries and keys
(the outputs of the modules the model family names: Qwen3-VL's ``q_norm`` / ``k_norm``, the projections
elsewhere) are captured by forward hooks and rotated again with the model's own rotary embedding at the unbiased
positions. When the last position runs alone on a cached prefix (:mod:`interventions.prefix`), the prefix's
pre-RoPE keys come from :func:`interventions.prefix.compute_prefix` (``keep_layer0_keys``) and the last one from
the hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from interventions.attention import last_row_scores
from interventions.prefix import PreRope
from interventions.state import LastRow, RowEdit, SteeringState

TOP_K = 10


@dataclass(frozen=True)
class CLVSParams:
    """The numbers that shape CLVS' answers (the authors' scripts use smoothing 0.8; the study's: presets)."""

    NEUTRAL: ClassVar[dict[str, float | bool]] = {"smoothing": 1.0, "position_unbiased": False}

    smoothing: float = 0.7
    window_memory_size: float = 0.8
    uncertainty_threshold: float = 0.5
    position_unbiased: bool = True
    logit_lens_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("smoothing", "window_memory_size", "uncertainty_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        for name in ("smoothing", "window_memory_size"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("position_unbiased", "logit_lens_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def neutral(self) -> bool:
        """No mixing and the plain layer 0 (:attr:`NEUTRAL`): the method cannot change any answer."""
        return all(getattr(self, name) == value for name, value in self.NEUTRAL.items())


def language_model(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (``layers``, ``norm``, ``rotary_emb``) of a vision-language model."""
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model", inner)


def unbiased_position_ids(
    positions: torch.Tensor, image_mask: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The rotary embedding's position ids with each image's tokens all at its first token's position.

    ``positions``: the prompt's ordinary ids as the rotary embedding takes them, ``[R, B, N]`` (M-RoPE: one row per
    section) or ``[B, N]`` (1-D RoPE); ``image_mask`` ``[B, N]``. Text after an image is shifted down so that the
    image occupies a single position; sequences without images, and padding, keep their positions.
    """
    flat = positions.dim() == 2
    rows = positions[None] if flat else positions
    image = image_mask.to(rows.device).bool()
    index = torch.arange(image.shape[1], device=image.device).expand_as(image)
    previous = torch.nn.functional.pad(image[:, :-1], (1, 0), value=False)
    run_start = torch.where(image & ~previous, index, 0).cummax(dim=-1).values  # latest image run start
    after_run = ~image & previous  # the token right after an image run
    # an image that took positions [p0, next text) now takes one: later tokens move down by the rest
    first = rows[0].gather(1, run_start)
    shift = torch.where(after_run, rows[0] - first - 1, 0).cumsum(dim=-1)
    unbiased = rows - shift[None]
    run_first = rows.gather(2, run_start[None].expand(rows.shape[0], -1, -1)) - shift[None]
    unbiased = torch.where(image[None], run_first, unbiased)
    if attention_mask is not None:
        unbiased = torch.where(attention_mask.to(rows.device)[None].bool(), unbiased, rows)
    return unbiased[0] if flat else unbiased


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def normalised_top_entropy(logits: torch.Tensor, top_k: int = TOP_K) -> torch.Tensor:
    """Entropy of the softmax over the top-k logits, divided by log(k): ``[B]`` in [0, 1]."""
    top = logits.float().topk(top_k, dim=-1).values
    log_p = torch.log_softmax(top, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1) / math.log(top_k)


class CLVS:
    """The CLVS method for one batch; ``unbiased_positions`` from :func:`unbiased_position_ids`.

    ``params`` is one :class:`CLVSParams` for every sequence, or one per sequence (a hyperparameter grid answered
    in one batch: each row its own smoothing, memory, threshold and layer 0; ``logit_lens_norm`` shared).
    """

    def __init__(
        self,
        params: CLVSParams | Sequence[CLVSParams],
        unbiased_positions: torch.Tensor | None,
        prefix_keys: torch.Tensor | None,
        pre_rope: PreRope,
        layer0_rotary: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], tuple],
    ) -> None:
        """``prefix_keys``: layer 0's pre-RoPE keys ``[B, N - 1, H_kv, D]`` when the last position runs alone;
        ``pre_rope``: the attention module's sub-modules whose outputs are the pre-RoPE queries and keys;
        ``layer0_rotary(model, probe, positions) -> (cos, sin)``: layer 0's rotary table (the family's: a decoder with
        layers of two kinds keeps one per kind)."""
        rows = [params] if isinstance(params, CLVSParams) else list(params)
        if not rows or len({p.logit_lens_norm for p in rows}) != 1:
            raise ValueError("CLVS rows need at least one setting and one logit_lens_norm for all")
        if any(p.position_unbiased for p in rows) and unbiased_positions is None:
            raise ValueError("position_unbiased=true needs unbiased_positions (see unbiased_position_ids)")
        self.params = rows[0]
        self.rows = rows
        self.unbiased_positions = unbiased_positions
        self.prefix_keys = prefix_keys
        self.pre_rope = pre_rope
        self.layer0_rotary = layer0_rotary
        self._model: torch.nn.Module | None = None
        self.memory: torch.Tensor | None = None  # [B, N]
        self.smoothing_on: torch.Tensor | None = None  # [B] bool
        self.stop_layer: list[int | None] = []
        self.entropies: dict[int, torch.Tensor] = {}  # layer -> [B], logit-lens entropy (layers > L // 2)
        self._raw_query: torch.Tensor | None = None  # layer 0 pre-RoPE q of the forward's last position [B, H, D]
        self._raw_key: torch.Tensor | None = None  # layer 0 pre-RoPE k of the forward's positions [B, q_len, H_kv, D]
        self._decoder: torch.nn.Module | None = None
        self._lm_head: torch.nn.Module | None = None
        self._state: SteeringState | None = None

    def _per_row(self, name: str, batch: int, device) -> torch.Tensor:
        values = [getattr(p, name) for p in self.rows]
        if len(values) == 1:
            values = values * batch
        if len(values) != batch:
            raise ValueError(f"CLVS has {len(values)} settings for a batch of {batch} sequences")
        dtype = torch.bool if isinstance(values[0], bool) else torch.float32
        return torch.tensor(values, dtype=dtype, device=device)

    # ------------------------------------------------------------ set-up
    def begin(self, state: SteeringState) -> None:
        batch, device = state.image_mask.shape[0], state.image_mask.device
        self.smoothing = self._per_row("smoothing", batch, device)[:, None, None]  # [B, 1, 1]
        self.memory_size = self._per_row("window_memory_size", batch, device)[:, None]  # [B, 1]
        self.threshold = self._per_row("uncertainty_threshold", batch, device)  # [B]
        self.unbiased = self._per_row("position_unbiased", batch, device)  # [B] bool
        self.memory = None
        self.smoothing_on = state.image_mask.any(dim=-1).clone()
        self.stop_layer = [None] * batch
        self.entropies = {}

    def hooks(self, model: torch.nn.Module, state: SteeringState) -> list:
        self._state = state
        self._model = model
        self._decoder = language_model(model)
        self._lm_head = model.get_output_embeddings()
        layers = self._decoder.layers
        handles = []
        if any(p.position_unbiased for p in self.rows):
            attention = layers[0].self_attn
            self._head_dim = attention.head_dim
            query_module, key_module = getattr(attention, self.pre_rope.query), getattr(attention, self.pre_rope.key)
            handles.append(query_module.register_forward_hook(self._capture_query))
            handles.append(key_module.register_forward_hook(self._capture_key))
        for index in range(len(layers) // 2 + 1, len(layers)):
            handles.append(layers[index].register_forward_hook(self._lens_hook(index)))
        return handles

    # Layer 0's pre-RoPE modules run before its attention decides whether this forward computes the last
    # prompt row, so they keep every forward's tensors (references, no copies); layer 0's edit uses them.
    def _capture_query(self, module, args, output: torch.Tensor) -> None:
        self._raw_query = self.pre_rope.heads(output, self._head_dim)[:, -1]  # [B, H, D]

    def _capture_key(self, module, args, output: torch.Tensor) -> None:
        self._raw_key = self.pre_rope.heads(output, self._head_dim)  # [B, q_len, H_kv, D]

    def _lens_hook(self, layer: int):
        def hook(module, args, output) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            if not self._state.in_last_row_forward or self.smoothing_on is None or not bool(self.smoothing_on.any()):
                return
            last = hidden[:, -1]
            if self.params.logit_lens_norm:
                last = self._decoder.norm(last)
            entropy = normalised_top_entropy(self._lm_head(last))
            self._follow(entropy.device)
            self.entropies[layer] = entropy
            stop = self.smoothing_on & (entropy < self.threshold)
            for b in torch.nonzero(stop).flatten().tolist():
                self.stop_layer[b] = layer
            self.smoothing_on = self.smoothing_on & ~stop

        return hook

    # ------------------------------------------------------------ the row
    def _unbiased_scores(self, row: LastRow) -> torch.Tensor:
        if self._raw_query is None or self._raw_key is None:
            raise RuntimeError("CLVS: layer 0's pre-RoPE query/key were not captured (hooks not installed?)")
        length = row.scores.shape[-1]
        key = self._raw_key
        if key.shape[1] != length:  # the last position alone: the prefix's keys come first
            if self.prefix_keys is None or self.prefix_keys.shape[1] + key.shape[1] != length:
                raise RuntimeError(
                    f"CLVS: layer 0 computed {key.shape[1]} of {length} positions and no matching prefix keys were given"
                )
            key = torch.cat([self.prefix_keys.to(key.device, key.dtype), key], dim=1)
        probe = key.new_zeros(1, dtype=torch.float32)
        positions = self.unbiased_positions.to(key.device)
        cos, sin = self.layer0_rotary(self._model, probe, positions)  # [B, N, D] float32
        query = self._raw_query.float()  # [B, H, D]
        query = query * cos[:, -1, None] + _rotate_half(query) * sin[:, -1, None]
        key = key.float()  # [B, N, H_kv, D]
        key = key * cos[:, :, None] + _rotate_half(key) * sin[:, :, None]
        self._raw_query = self._raw_key = None
        return last_row_scores(query[:, :, None], key.transpose(1, 2), row.module.scaling)

    def _follow(self, device: torch.device) -> None:
        """Keep the per-sequence state on the device of the layer at hand (a model sharded across GPUs runs its
        layers on several); a no-op on one device."""
        if self.smoothing.device == device:
            return
        for name in ("smoothing", "memory_size", "threshold", "unbiased", "smoothing_on", "memory"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))

    def edit(self, row: LastRow) -> RowEdit | None:
        self._follow(row.scores.device)
        image = row.image_mask[:, None, :]
        if row.layer == 0:
            rows = row.has_image & self.unbiased
            weights = row.weights
            if bool(rows.any()):
                unbiased = torch.softmax(self._unbiased_scores(row) + row.mask, dim=-1)
                weights = torch.where(rows[:, None, None], unbiased, row.weights)
            self.memory = (weights * image).amax(dim=1)
            return RowEdit(weights=weights, rows=rows) if bool(rows.any()) else None
        weights = row.weights
        rows = row.has_image & self.smoothing_on & (self.smoothing[:, 0, 0] != 1.0)
        edit = None
        if bool(rows.any()):
            s = self.smoothing
            mixed = torch.where(image, s * weights + (1.0 - s) * self.memory[:, None, :], weights)
            edit = RowEdit(weights=mixed / mixed.sum(dim=-1, keepdim=True), rows=rows)
        r = self.memory_size
        self.memory = r * self.memory + (1.0 - r) * (weights * image).amax(dim=1)
        return edit
