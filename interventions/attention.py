"""The one attention function all interventions share: fused SDPA plus an explicit last row.

Registered with transformers' ``AttentionInterface`` (and the SDPA mask function
with ``AttentionMaskInterface``, without which transformers would build no padding
mask for an unknown implementation name) under :data:`ATTENTION_NAME`.
:func:`use_steered_attention` switches a loaded model's *text* decoder to it (the
vision tower keeps SDPA).

Outside a :func:`steer` block, and in every decode step, the function is exactly
``sdpa_attention_forward``. In the forward that computes the prompt's last position
(the whole prefill, or a one-token forward on a cached prefix, see
:mod:`interventions.prefix`) under an active state it runs the fused kernel for all
rows, then recomputes the last row
(``q_last . K^T * scaling + mask_last``; GQA heads grouped, never repeated in
memory), hands it to the method and the observers, and where the method returned
new weights overwrites the last row's output with ``weights @ V``. Cost: O(N)
per head and layer; no eager attention, no N x N map.

A method that says it edits more (``interventions.state.RowEditor``) is also called in decoding steps: PAI's
``edit`` on each step's one row (the same O(N) recomputation, in place of the fused kernel when every sequence's row
is edited, skipped in layers its ``edits_layer`` rules out), VAF's ``attend`` in place of the fused kernel of any call
(the kernel, run on the rows before the image with the keys as they are and on the rows after it with scaled keys).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from interventions.state import AttentionCall, LastRow, SteeringState, activate, active_state

ATTENTION_NAME = "vsr_steered_sdpa"


def text_config(model: torch.nn.Module):
    """The text (decoder) config of a vision-language model, or the model's config for a text-only model."""
    return getattr(model.config, "text_config", None) or model.config


def last_row_scores(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """``q_last . K^T * scaling`` as float32 ``[B, H, N]``; query ``[B, H, N, D]``, key ``[B, H_kv, N, D]``."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q_last = query[:, :, -1].float().reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q_last, key.float().transpose(-1, -2))  # [B, H_kv, G, N]
    return scores.reshape(batch, heads, -1) * scaling


def weighted_values(weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``weights @ V`` for one row per head: weights ``[B, H, N]``, value ``[B, H_kv, N, D]`` -> ``[B, H, D]``."""
    batch, heads, length = weights.shape
    kv_heads = value.shape[1]
    grouped = weights.reshape(batch, kv_heads, heads // kv_heads, length)
    return torch.matmul(grouped, value.float()).reshape(batch, heads, -1)


def last_row_mask(attention_mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """The last query row's additive mask ``[B, 1, N]`` (float32: 0 visible, -inf hidden)."""
    if attention_mask is None:  # causal without padding: the last row sees every key
        return torch.zeros(batch, 1, length, device=device)
    row = attention_mask[:, :, -1, :length]
    if row.dtype == torch.bool:
        row = torch.zeros(row.shape, device=device).masked_fill(~row, float("-inf"))
    else:
        row = row.float().masked_fill(row <= torch.finfo(attention_mask.dtype).min, float("-inf"))
    return row[:, :1].expand(batch, 1, length)


def steered_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA, with the prompt's last row handed to the active state's method and observers."""

    def fused() -> torch.Tensor:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)[0]

    state = active_state()
    layer = getattr(module, "layer_idx", None)
    if state is None or layer is None or not state.active:
        return fused(), None
    if layer == 0:
        last_row = state.computes_last_row(query, key)
        state.start_forward(last_row, decoding=not last_row and state.follows_decoding and state.decodes(query, key))
    if not (state.in_last_row_forward or state.in_decode_forward):
        return fused(), None
    output = None
    attend = getattr(state.method, "attend", None)
    if attend is not None:
        call = AttentionCall(
            layer=layer,
            module=module,
            query=query,
            key=key,
            value=value,
            attention_mask=attention_mask,
            scaling=scaling,
            kwargs=kwargs,
        )
        output = attend(call)  # None: the method leaves this call to the fused kernel
    if state.in_decode_forward and not getattr(state.method, "edits_decode_rows", False):
        return (fused() if output is None else output), None
    return _steer_last_row(state, module, layer, output, fused, query, key, value, attention_mask, scaling), None


def _steer_last_row(
    state: SteeringState,
    module: torch.nn.Module,
    layer: int,
    output: torch.Tensor | None,
    fused: Callable[[], torch.Tensor],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
) -> torch.Tensor:
    """The last query row (the prompt's last position, or a decoding step's row) recomputed, handed to the method
    and, for the prompt's, to the observers; ``output`` is the call's output when ``attend`` computed it, else None
    (the fused kernel runs here, unless a decoding step's only row is replaced in every sequence)."""
    decoding = state.in_decode_forward
    watched = bool(state.observers) and not decoding
    edits_layer = getattr(state.method, "edits_layer", None)
    if not watched and (state.method is None or (edits_layer is not None and not edits_layer(layer, decoding))):
        return fused() if output is None else output
    batch, _, _, dim = query.shape
    length = key.shape[2]
    scale = scaling if scaling is not None else dim**-0.5
    row = LastRow(
        layer=layer,
        scores=last_row_scores(query, key, scale),
        mask=last_row_mask(attention_mask, batch, length, query.device),
        image_mask=state.keys_image_mask(length, query.device),  # each layer on its own device when sharded
        module=module,
        decoding=decoding,
    )
    edit = state.method.edit(row) if state.method is not None else None
    edited = None
    if edit is not None and edit.any():
        edited = edit.rows
        new_last = weighted_values(edit.weights, value)  # [B, H, D] float32
        if output is None and decoding and edit.all():  # the step's one row, replaced everywhere
            output = new_last[:, None].to(query.dtype)
        else:
            output = fused() if output is None else output
            output[:, -1] = torch.where(edited[:, None, None], new_last.to(output.dtype), output[:, -1])
        if not decoding:
            state.edited_layers.append(layer)
    elif output is None:
        output = fused()
    if watched:  # the weights the model used (the row's own softmax is computed only here or by the method)
        used = row.weights if edited is None else torch.where(edited[:, None, None], edit.weights, row.weights)
        for observer in state.observers:
            observer.observe(row, used, edited)
    return output


@contextlib.contextmanager
def steer(model: torch.nn.Module, state: SteeringState) -> Iterator[SteeringState]:
    """Activate ``state`` for forwards of ``model`` inside the block; the model must use the steered attention."""
    if text_config(model)._attn_implementation != ATTENTION_NAME:
        raise RuntimeError(
            f"the model's text attention is {text_config(model)._attn_implementation!r}; "
            "call interventions.use_steered_attention(model) before steering it"
        )
    handles = list(state.method.hooks(model, state)) if state.method is not None else []
    try:
        with activate(state):
            yield state
    finally:
        for handle in handles:
            handle.remove()


def register() -> None:
    """Register the attention and mask functions under :data:`ATTENTION_NAME` (idempotent)."""
    AttentionInterface.register(ATTENTION_NAME, steered_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def use_steered_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Switch the model's text attention to the steered SDPA (the vision tower is left on its own)."""
    register()
    if text_config(model)._attn_implementation == ATTENTION_NAME:
        return model
    if hasattr(model.config, "text_config"):
        model.set_attn_implementation({"text_config": ATTENTION_NAME})
    else:
        model.set_attn_implementation(ATTENTION_NAME)
    if text_config(model)._attn_implementation != ATTENTION_NAME:
        raise RuntimeError(f"could not switch {type(model).__name__} to the {ATTENTION_NAME} attention")
    return model


register()
