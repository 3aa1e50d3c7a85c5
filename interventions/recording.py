"""Recording the prefill's last-row attention (head mean), for the attention log and for VEA.

The one question every consumer asks is "how much, and where in the image, did the
last prompt position look, per layer?". :class:`LastRowRecorder` is an observer of
the steered attention that keeps, per layer, the head-mean last row as the model
used it (and as it was before an intervention changed it), ``[B, N]`` each:
O(L * B * N) floats, never an N x N map.

Stable API (VEA uses it)::

    from interventions.recording import record_image_attention

    # one fused prefill forward, no generation; layers=None means all layers
    per_sequence = record_image_attention(model, inputs, image_mask, layers=[5, 9])
    per_sequence[b]            # float32 [len(layers), n_image_tokens_b], image tokens in prompt order

or, to record during any forward (e.g. inside ``generate`` together with a method)::

    recorder = LastRowRecorder(layers=None)
    with steer(model, SteeringState(image_mask, method=None, observers=[recorder])):
        model.generate(**inputs)
    recorder.image_attention(b)          # [L_recorded, n_image_tokens_b] as used
    recorder.image_mass(b), recorder.text_mass(b)   # per recorded layer, lists of floats
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from interventions.attention import steer, use_steered_attention
from interventions.state import LastRow, SteeringState


class LastRowRecorder:
    """Observer keeping each recorded layer's head-mean last row, before and after any edit."""

    def __init__(self, layers: Sequence[int] | None = None) -> None:
        self.layers = None if layers is None else sorted({int(layer) for layer in layers})
        self.used: dict[int, torch.Tensor] = {}  # layer -> [B, N] float32, head mean, as used
        self.before: dict[int, torch.Tensor] = {}  # layer -> [B, N], only layers an edit changed
        self.edited: dict[int, torch.Tensor] = {}  # layer -> [B] bool
        self.image_mask: torch.Tensor | None = None

    def begin(self, state: SteeringState) -> None:
        self.used.clear()
        self.before.clear()
        self.edited.clear()
        self.image_mask = state.image_mask.detach()

    def observe(self, row: LastRow, used: torch.Tensor, edited: torch.Tensor | None) -> None:
        if self.layers is not None and row.layer not in self.layers:
            return
        self.used[row.layer] = used.mean(dim=1).detach()
        if edited is not None:
            self.before[row.layer] = row.weights.mean(dim=1).detach()
            self.edited[row.layer] = edited.detach()

    @property
    def recorded_layers(self) -> list[int]:
        return sorted(self.used)

    def _rows(self, sequence: int, before: bool) -> torch.Tensor:
        if not self.used:
            raise RuntimeError("nothing recorded: no prefill ran under the steering state")
        rows = []
        for layer in self.recorded_layers:
            source = self.before if before and layer in self.before else self.used
            rows.append(source[layer][sequence].float().cpu())  # layers may sit on different devices
        return torch.stack(rows)  # [L_recorded, N]

    def image_attention(self, sequence: int, before: bool = False) -> torch.Tensor:
        """``[L_recorded, n_image_tokens]``: head-mean last-row weights on this sequence's image keys."""
        keys = self.image_mask[sequence].cpu()
        return self._rows(sequence, before)[:, keys]

    def image_mass(self, sequence: int, before: bool = False) -> list[float]:
        """Per recorded layer: head-mean last-row attention mass on image keys."""
        keys = self.image_mask[sequence].cpu()
        return self._rows(sequence, before)[:, keys].sum(dim=-1).tolist()

    def text_mass(self, sequence: int, before: bool = False) -> list[float]:
        """Per recorded layer: the mass on non-image keys (padding has weight 0)."""
        keys = self.image_mask[sequence].cpu()
        return self._rows(sequence, before)[:, ~keys].sum(dim=-1).tolist()

    def changed(self, sequence: int) -> bool:
        """Whether an intervention edited this sequence's last row in any recorded layer."""
        return any(bool(rows[sequence]) for rows in self.edited.values())


class _EnoughRecorded(Exception):
    """Raised after the last layer a recording needs: the rest of the forward is skipped."""


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    for path in ("model.language_model.layers", "model.layers", "language_model.layers"):
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    return None


@torch.inference_mode()
def record_image_attention(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    image_mask: torch.Tensor,
    layers: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """One fused prefill: per sequence, ``[len(layers), n_image_tokens]`` head-mean last-row image attention.

    ``inputs`` are the processor's tensors (left padded), ``image_mask`` ``[B, N]`` marks image tokens.
    The model is switched to the steered attention if it is not already. With ``layers`` given, the
    forward stops after the attention of the last of them (nothing later is needed), so the recording
    costs at most one prefill.
    """
    use_steered_attention(model)
    recorder = LastRowRecorder(layers)
    decoder_layers = _decoder_layers(model) if layers else None
    handle = None
    if decoder_layers is not None:

        def stop(module, args, output):
            raise _EnoughRecorded

        handle = decoder_layers[max(recorder.layers)].self_attn.register_forward_hook(stop)
    try:
        with steer(model, SteeringState(image_mask=image_mask, observers=[recorder])):
            model(**inputs, logits_to_keep=1, use_cache=False)
    except _EnoughRecorded:
        pass
    finally:
        if handle is not None:
            handle.remove()
    return [recorder.image_attention(b) for b in range(image_mask.shape[0])]
