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

    prefix = compute_prefix(model, inputs, family)           # vision tower + positions 0..N-2
    logits = next_token_logits(model, prefix)                # plain last position: [B, V]
    with steer(model, state):
        model.generate(**prefix.generation_inputs(), ...)    # steered last position, then decoding
    prefix.rewind(model)                                     # ready for the next pass

``family`` is the model's adapter (``families``): it builds the prompt's positions as ``generate`` does (M-RoPE from
``get_rope_index``, or one position per token) and restores what a pass changes (Qwen's ``rope_deltas``), so a pass
on the prefix gives the logits a whole-prompt ``generate`` gives, to float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

PROMPT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")  # [B, N] tensors cut at N - 1
VISION_KEYS = ("pixel_values", "pixel_values_videos", "mm_encoder_outputs")  # used by the prefix only


class PrefixUnsupported(RuntimeError):
    """The prompt or the model's cache cannot be shared this way; the message says why."""


@dataclass
class PromptPrefix:
    """Positions 0..N-2 of a left-padded batch: their KV cache and what a pass on position N - 1 needs."""

    cache: DynamicCache
    inputs: dict[str, torch.Tensor]  # the whole prompt's tensors, without pixel values (already encoded)
    positions: torch.Tensor  # the whole prompt's position ids: [4, B, N] (M-RoPE) or [B, N] (1-D)
    state: Any  # what the family restores between passes (Qwen: rope_deltas [B, 1])
    layer0_keys: torch.Tensor | None  # [B, N - 1, H_kv, D]: layer 0's pre-RoPE keys, when asked for
    family: Any

    @property
    def prompt_length(self) -> int:
        """N, left padding included."""
        return self.inputs["input_ids"].shape[1]

    def rewind(self, model: torch.nn.Module) -> None:
        """Crop the cache back to N - 1 positions and restore the model's state (a pass may change both)."""
        extra = self.cache.get_seq_length() - (self.prompt_length - 1)
        if extra > 0:
            self.cache.crop(-extra)
        self.family.restore(model, self.state)

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
        positions = self.positions.repeat(*([1] * (self.positions.dim() - 2)), copies, 1)
        return PromptPrefix(
            cache=cache,
            inputs={key: tile(value) for key, value in self.inputs.items() if key in PROMPT_KEYS},
            positions=positions,
            state=self.family.tile_state(self.state, copies),
            layer0_keys=tile(self.layer0_keys) if self.layer0_keys is not None else None,
            family=self.family,
        )

    def generation_inputs(self) -> dict:
        """Keyword arguments for ``model.generate``: the whole prompt plus the cache (only N - 1 is computed)."""
        return {**self.inputs, "cache": self.cache}

    def last_position_inputs(self) -> dict:
        """Keyword arguments for one forward of position N - 1 on the cache."""
        return {
            "input_ids": self.inputs["input_ids"][:, -1:],
            "attention_mask": self.inputs["attention_mask"],
            "position_ids": self.positions[..., -1:],
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


@dataclass(frozen=True)
class PreRope:
    """Which two modules of a decoder layer's attention give the queries and keys before the rotary embedding.

    Why a layout flag: the projections give ``[B, q_len, heads * head_dim]`` and Qwen3's norms ``[B, q_len, heads,
    head_dim]``, but Gemma-3 transposes before its norms, which then give ``[B, heads, q_len, head_dim]``; a reshape
    cannot tell the two apart when ``heads == q_len``, so the family says which it is.
    """

    query: str
    key: str
    heads_first: bool = False

    def heads(self, output: torch.Tensor, head_dim: int) -> torch.Tensor:
        """The module's output as ``[B, q_len, heads, head_dim]``."""
        if self.heads_first:
            return output.transpose(1, 2)
        return output.view(*output.shape[:2], -1, head_dim)


@torch.inference_mode()
def compute_prefix(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], family: Any, keep_layer0_keys: bool = False
) -> PromptPrefix:
    """One forward over positions 0..N-2 (images encoded here) with a KV cache.

    ``inputs`` are the processor's tensors for a left-padded batch; ``family`` the model's adapter (``families``).
    ``keep_layer0_keys`` also keeps layer 0's pre-RoPE keys of those positions (CLVS' position-unbiased layer 0
    rotates them again). Raises :class:`PrefixUnsupported` when the last position is an image or video token or
    the cache cannot be cropped.
    """
    input_ids = inputs["input_ids"]
    if input_ids.shape[1] < 2:
        raise PrefixUnsupported("the prompt has a single position")
    media = torch.tensor(family.media_token_ids(model), device=input_ids.device)
    if bool(torch.isin(input_ids[:, -1], media).any()):
        raise PrefixUnsupported("the prompt's last position is an image or video token")
    positions, state = family.prompt_positions(model, inputs)
    forward = {key: value for key, value in inputs.items() if key not in PROMPT_KEYS}
    forward.update({key: inputs[key][:, :-1] for key in PROMPT_KEYS if inputs.get(key) is not None})
    captured: list[torch.Tensor] = []
    handle = None
    if keep_layer0_keys:
        attention = family.decoder(model).layers[0].self_attn
        key_module = getattr(attention, family.pre_rope.key)
        handle = key_module.register_forward_hook(
            lambda module, args, output: captured.append(family.pre_rope.heads(output, attention.head_dim))
        )
    try:
        # a plain cache of full layers: one that keeps only a sliding window (Gemma-3's local layers) cannot be cropped
        # back, and the sliding-window mask is built from positions either way
        output = model(
            **forward, position_ids=positions[..., :-1], cache=DynamicCache(), use_cache=True, logits_to_keep=1
        )
    finally:
        if handle is not None:
            handle.remove()
    _check_cache(output.cache)
    kept = {key: value for key, value in inputs.items() if key not in VISION_KEYS}
    prefix = PromptPrefix(
        cache=output.cache,
        inputs=kept,
        positions=positions,
        state=state,
        layer0_keys=captured[0] if captured else None,
        family=family,
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
