"""The prompt's first N - 1 positions, computed once and shared by every pass that follows.

Why: AdaptVis, CLVS and the attention log read or change only the attention row of the
prompt's last position (N - 1). Under causal attention positions 0..N-2 never see it, so
their keys, values and hidden states are the same at every layer whatever a method does
(docs/METHODS.md, "the last-row invariant"). One forward over them, the vision tower included,
with a KV cache, serves the confidence pass, the steered pass and every point of a
hyperparameter grid. Each of those is a one-token forward of position N - 1 on the cache,
which the steered attention recognises as the last-row forward; :meth:`PromptPrefix.rewind`
crops the cache back to N - 1 positions between them.

Usage::

    prefix = compute_prefix(model, inputs)                   # vision tower + positions 0..N-2
    logits = next_token_logits(model, prefix)                # plain last position: [B, V]
    with steer(model, state):
        model.generate(**prefix.generation_inputs(), ...)    # steered last position, then decoding
    prefix.rewind(model)                                     # ready for the next pass

Positions follow ``generate``'s own recipe (attention-mask text positions; M-RoPE from
``get_rope_index`` when images are present), so a pass on the prefix gives the logits a
whole-prompt ``generate`` gives, to float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

PROMPT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")  # [B, N] tensors cut at N - 1
VISION_KEYS = ("pixel_values", "pixel_values_videos", "mm_encoder_outputs")  # used by the prefix only


class PrefixUnsupported(RuntimeError):
    """The prompt or the model's cache cannot be shared this way; the message says why."""


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The multimodal body (``Qwen3VLModel``) that keeps ``rope_deltas`` between forwards."""
    return getattr(model, "model", model)


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    inner = inner_model(model)
    decoder = getattr(inner, "language_model", inner)
    return decoder.layers


def prompt_positions(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[4, B, N]`` position ids (text row + 3 M-RoPE rows) and ``[B, 1]`` rope deltas, as ``generate`` builds them."""
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    grids = {key: inputs[key] for key in ("image_grid_thw", "video_grid_thw") if inputs.get(key) is not None}
    if grids and inputs.get("mm_token_type_ids") is not None:
        vision, deltas = inner_model(model).get_rope_index(
            input_ids, mm_token_type_ids=inputs["mm_token_type_ids"], attention_mask=attention_mask, **grids
        )
    else:
        vision = text[None].expand(3, -1, -1)
        deltas = torch.zeros(input_ids.shape[0], 1, dtype=torch.long, device=input_ids.device)
    return torch.cat([text[None], vision.to(text.device)], dim=0), deltas


@dataclass
class PromptPrefix:
    """Positions 0..N-2 of a left-padded batch: their KV cache and what a pass on position N - 1 needs."""

    cache: DynamicCache
    inputs: dict[str, torch.Tensor]  # the whole prompt's tensors, without pixel values (already encoded)
    positions: torch.Tensor  # [4, B, N]
    rope_deltas: torch.Tensor  # [B, 1]
    layer0_keys: torch.Tensor | None  # [B, N - 1, H_kv, D]: layer 0's pre-RoPE keys, when asked for

    @property
    def prompt_length(self) -> int:
        """N, left padding included."""
        return self.inputs["input_ids"].shape[1]

    def rewind(self, model: torch.nn.Module) -> None:
        """Crop the cache back to N - 1 positions and restore the model's rope deltas (a pass may change both)."""
        extra = self.cache.get_seq_length() - (self.prompt_length - 1)
        if extra > 0:
            self.cache.crop(-extra)
        inner_model(model).rope_deltas = self.rope_deltas

    def expanded(self, copies: int) -> PromptPrefix:
        """The same prefix ``copies`` times over, setting-major (row ``k * B + b``): many settings in one pass.

        Every grid point of a sweep then shares one batched one-token forward per generated token instead of one
        forward per point. The copy has its own cache; this prefix is left as it is.
        """
        if copies == 1:
            return self

        def tile(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.repeat(copies, *([1] * (tensor.dim() - 1)))

        cache = DynamicCache(ddp_cache_data=[(tile(layer.keys), tile(layer.values)) for layer in self.cache.layers])
        return PromptPrefix(
            cache=cache,
            inputs={key: tile(value) for key, value in self.inputs.items() if key in PROMPT_KEYS},
            positions=self.positions.repeat(1, copies, 1),
            rope_deltas=tile(self.rope_deltas),
            layer0_keys=tile(self.layer0_keys) if self.layer0_keys is not None else None,
        )

    def generation_inputs(self) -> dict:
        """Keyword arguments for ``model.generate``: the whole prompt plus the cache (only N - 1 is computed)."""
        return {**self.inputs, "cache": self.cache}

    def last_position_inputs(self) -> dict:
        """Keyword arguments for one forward of position N - 1 on the cache."""
        return {
            "input_ids": self.inputs["input_ids"][:, -1:],
            "attention_mask": self.inputs["attention_mask"],
            "position_ids": self.positions[:, :, -1:],
            "cache": self.cache,
            "use_cache": True,
        }


def _check_cache(cache: object) -> None:
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None:
        raise PrefixUnsupported(f"the model's cache is a {type(cache).__name__}, which cannot be cropped back")
    odd = {type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer}
    if odd:
        raise PrefixUnsupported(f"the model's cache has {', '.join(sorted(odd))} layers, which cannot be cropped back")


@torch.inference_mode()
def compute_prefix(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], keep_layer0_keys: bool = False
) -> PromptPrefix:
    """One forward over positions 0..N-2 (images encoded here) with a KV cache.

    ``inputs`` are the processor's tensors for a left-padded batch. ``keep_layer0_keys`` also keeps layer 0's
    pre-RoPE keys of those positions (CLVS' position-unbiased layer 0 rotates them again).
    Raises :class:`PrefixUnsupported` when the last position is not a text token or the cache cannot be cropped.
    """
    input_ids = inputs["input_ids"]
    if input_ids.shape[1] < 2:
        raise PrefixUnsupported("the prompt has a single position")
    token_types = inputs.get("mm_token_type_ids")
    if token_types is not None and bool(token_types[:, -1].any()):
        raise PrefixUnsupported("the prompt's last position is an image or video token")
    positions, deltas = prompt_positions(model, inputs)
    forward = {key: value for key, value in inputs.items() if key not in PROMPT_KEYS}
    forward.update({key: inputs[key][:, :-1] for key in PROMPT_KEYS if inputs.get(key) is not None})
    captured: list[torch.Tensor] = []
    handle = None
    if keep_layer0_keys:
        k_norm = _decoder_layers(model)[0].self_attn.k_norm
        handle = k_norm.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        output = model(**forward, position_ids=positions[:, :, :-1], use_cache=True, logits_to_keep=1)
    finally:
        if handle is not None:
            handle.remove()
    _check_cache(output.cache)
    kept = {key: value for key, value in inputs.items() if key not in VISION_KEYS}
    prefix = PromptPrefix(
        cache=output.cache,
        inputs=kept,
        positions=positions,
        rope_deltas=deltas,
        layer0_keys=captured[0] if captured else None,
    )
    prefix.rewind(model)
    return prefix


@torch.inference_mode()
def next_token_logits(model: torch.nn.Module, prefix: PromptPrefix) -> torch.Tensor:
    """``[B, V]`` float32 logits of the token after the prompt: one forward of position N - 1 on the prefix.

    Under an active steering state this is the steered last-row forward. The cache is rewound afterwards.
    """
    prefix.rewind(model)
    try:
        output = model(**prefix.last_position_inputs())
    finally:
        prefix.rewind(model)
    return output.logits[:, -1].float()
