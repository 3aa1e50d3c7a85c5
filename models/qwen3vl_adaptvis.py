"""AdaptVis as an lmms-eval model (``--model qwen3vl_adaptvis``).

Two passes per batch: a prefill gives each sequence's confidence (top-1 probability of
the first token; the same token greedy generation would emit first), then generation
with the last row's image logits scaled by that sequence's ``alpha`` in the selected
layers (``interventions.adaptvis``). Decode steps are untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions import use_steered_attention
from interventions.adaptvis import AdaptVis, AdaptVisParams, first_token_confidence
from interventions.layers import parse_layers
from models.qwen3vl import GenerationSettings, PreparedBatch, Qwen3VL, Response


class Qwen3VLAdaptVis(Qwen3VL):
    """Qwen3-VL with AdaptVis: smoothen (low confidence) or sharpen (high) the last row's image attention."""

    MODEL_NAME: ClassVar[str] = "qwen3vl_adaptvis"

    def __init__(
        self,
        confidence_threshold: float = 0.8,
        sharpen_weight: float = 1.2,
        smoothen_weight: float = 0.2,
        layers: str | list[int] = "all",
        **kwargs: Any,
    ) -> None:
        self.params = AdaptVisParams(confidence_threshold, sharpen_weight, smoothen_weight)
        self.layers_argument = layers
        parse_layers(layers, 10**6)  # refuse a malformed value before loading the checkpoint
        super().__init__(**kwargs)
        self.layers = parse_layers(layers, self.model.config.text_config.num_hidden_layers)
        use_steered_attention(self.model)

    def method_arguments(self) -> dict:
        return {
            "confidence_threshold": self.params.confidence_threshold,
            "sharpen_weight": self.params.sharpen_weight,
            "smoothen_weight": self.params.smoothen_weight,
            "layers": self.layers_argument
            if isinstance(self.layers_argument, (str, int))
            else list(self.layers_argument),
        }

    @torch.inference_mode()
    def encode_images_once(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch with its images already encoded, so both passes share one vision-tower run.

        transformers' ``generate`` and ``forward`` accept pre-encoded ``mm_encoder_outputs`` in place of
        ``pixel_values``; the answers are the same, the second vision forward is saved.
        """
        if "pixel_values" not in batch.inputs:
            return batch
        inputs = {key: value for key, value in batch.inputs.items() if key != "pixel_values"}
        features = self.model.get_image_features(batch.inputs["pixel_values"], batch.inputs["image_grid_thw"])
        inputs["mm_encoder_outputs"] = {"image": features}
        return dataclasses.replace(batch, inputs=inputs)

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """Pass 1: confidence from a prefill; pass 2: generation under the per-sequence scaling."""
        batch = self.encode_images_once(batch)
        confidence = first_token_confidence(self.prefill_logits(batch))
        alphas = self.params.alphas(confidence)
        with self.steering(batch, AdaptVis(alphas, self.layers)):
            response = self.generate(batch, settings)
        response.extras = [
            {"decision": {"confidence": float(c), "alpha": float(a)}} for c, a in zip(confidence, alphas)
        ]
        return response
