"""Which layers the analysis' attention figures show. The log's format, its writer and its reader are one module,
``models.attention_log``."""

from __future__ import annotations

import math


def layer_selection(num_layers: int, layer: int | None = None) -> list[int]:
    """The layers a heatmap shows: ``layer`` (negative counts from the end), else the last third (rounded up)."""
    if layer is None:
        count = max(1, math.ceil(num_layers / 3))
        return list(range(num_layers - count, num_layers))
    index = layer + num_layers if layer < 0 else layer
    if not 0 <= index < num_layers:
        raise ValueError(f"--layer {layer} is outside the model's {num_layers} layers (0-{num_layers - 1})")
    return [index]


def describe_layers(layers: list[int], num_layers: int) -> str:
    """'layer 3' or 'layers 2-3 of 4 (mean)', for titles."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return f"layers {layers[0]}-{layers[-1]} of {num_layers} (mean)"
