"""CLVS as an lmms-eval model (``--model qwen3vl_clvs``): one pass, see ``interventions.clvs``."""

from __future__ import annotations

from typing import Any, ClassVar

from interventions import use_steered_attention
from interventions.clvs import CLVS, CLVSParams, unbiased_position_ids
from models.qwen3vl import GenerationSettings, PreparedBatch, Qwen3VL, Response


class Qwen3VLCLVS(Qwen3VL):
    """Qwen3-VL with Cross-Layer Vision Smoothing of the prefill's last row."""

    MODEL_NAME: ClassVar[str] = "qwen3vl_clvs"

    def __init__(
        self,
        smoothing: float = 0.7,
        window_memory_size: float = 0.8,
        uncertainty_threshold: float = 0.5,
        position_unbiased: bool = True,
        logit_lens_norm: bool = True,
        **kwargs: Any,
    ) -> None:
        self.params = CLVSParams(
            smoothing, window_memory_size, uncertainty_threshold, position_unbiased, logit_lens_norm
        )
        super().__init__(**kwargs)
        use_steered_attention(self.model)

    def method_arguments(self) -> dict:
        return {
            "smoothing": self.params.smoothing,
            "window_memory_size": self.params.window_memory_size,
            "uncertainty_threshold": self.params.uncertainty_threshold,
            "position_unbiased": self.params.position_unbiased,
            "logit_lens_norm": self.params.logit_lens_norm,
        }

    def method_for(self, batch: PreparedBatch) -> CLVS:
        """The CLVS state for one batch (position-unbiased M-RoPE positions computed from its inputs)."""
        positions = None
        if self.params.position_unbiased:
            inputs = batch.inputs
            positions = unbiased_position_ids(
                self.model,
                inputs["input_ids"],
                inputs.get("attention_mask"),
                inputs.get("mm_token_type_ids"),
                inputs.get("image_grid_thw"),
            )
        return CLVS(self.params, positions)

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        method = self.method_for(batch)
        with self.steering(batch, method):
            response = self.generate(batch, settings)
        response.extras = [{"decision": {"stop_layer": layer}} for layer in method.stop_layer]
        return response
