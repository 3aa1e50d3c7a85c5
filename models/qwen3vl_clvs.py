"""CLVS as an lmms-eval model (``--model qwen3vl_clvs``): one pass, see ``interventions.clvs``.

The prompt's first N - 1 positions are computed once (``interventions.prefix``, keeping layer 0's
pre-RoPE keys for the position-unbiased row); generation continues from one steered forward of
the last position. The same prefix can serve any number of settings (``sweep``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from interventions import use_steered_attention
from interventions.clvs import CLVS, CLVSParams, unbiased_position_ids
from interventions.prefix import PromptPrefix
from models.presets import resolve
from models.qwen3vl import GenerationSettings, PreparedBatch, Qwen3VL, Response


class Qwen3VLCLVS(Qwen3VL):
    """Qwen3-VL with Cross-Layer Vision Smoothing of the prefill's last row."""

    MODEL_NAME: ClassVar[str] = "qwen3vl_clvs"
    STEERS: ClassVar[bool] = True

    DEFAULTS: ClassVar[dict] = {
        "smoothing": 0.7,
        "window_memory_size": 0.8,
        "uncertainty_threshold": 0.5,
        "position_unbiased": True,
        "logit_lens_norm": True,
    }

    def __init__(
        self,
        smoothing: float | None = None,
        window_memory_size: float | None = None,
        uncertainty_threshold: float | None = None,
        position_unbiased: bool | None = None,
        logit_lens_norm: bool | None = None,
        preset: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Unset arguments (None) come from ``preset`` (``models/presets.json``), else from :attr:`DEFAULTS`."""
        given = {
            "smoothing": smoothing,
            "window_memory_size": window_memory_size,
            "uncertainty_threshold": uncertainty_threshold,
            "position_unbiased": position_unbiased,
            "logit_lens_norm": logit_lens_norm,
        }
        values, from_preset = resolve(self.MODEL_NAME, preset, given, self.DEFAULTS)
        self.preset = preset
        self.params = CLVSParams(**values)
        super().__init__(**kwargs)
        use_steered_attention(self.model)
        self.announce_preset(preset, from_preset)

    def method_arguments(self) -> dict:
        return {
            **({"preset": self.preset} if self.preset not in (None, "", "none", "None") else {}),
            "smoothing": self.params.smoothing,
            "window_memory_size": self.params.window_memory_size,
            "uncertainty_threshold": self.params.uncertainty_threshold,
            "position_unbiased": self.params.position_unbiased,
            "logit_lens_norm": self.params.logit_lens_norm,
        }

    def method_for(self, batch: PreparedBatch, prefix: PromptPrefix | None = None) -> CLVS:
        """The CLVS state for one batch (position-unbiased M-RoPE positions computed from its inputs).

        With ``prefix``, layer 0's keys of positions 0..N-2 come from it (the last position then runs alone).
        """
        positions = None
        if self.params.position_unbiased:
            inputs = batch.inputs
            positions = unbiased_position_ids(
                self.model,
                inputs["input_ids"],
                inputs.get("attention_mask"),
                inputs.get("mm_token_type_ids"),
                inputs.get("image_grid_thw"),
                positions=prefix.positions[1:] if prefix is not None else None,
            )
        prefix_keys = prefix.layer0_keys if prefix is not None else None
        return CLVS(self.params, positions, prefix_keys=prefix_keys)

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """The shared prefix, then generation from one steered forward of the last position.

        Neutral settings take the whole-prompt pass: exactly ``qwen3vl``'s computation in any dtype (the logit
        lens still reports where smoothing would have stopped).
        """
        if self.params.neutral:
            return self.respond_whole_prompt(batch, settings)
        prefix = self.prompt_prefix(batch, keep_layer0_keys=self.params.position_unbiased)
        if prefix is None:
            return self.respond_whole_prompt(batch, settings)
        method = self.method_for(batch, prefix)
        with self.steering(batch, method):
            response = self.generate(batch, settings, prefix=prefix)
        return self._with_decisions(response, method)

    def respond_whole_prompt(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """The same answers from one whole-prompt pass: the fallback, and the tests' reference."""
        method = self.method_for(batch)
        with self.steering(batch, method):
            response = self.generate(batch, settings)
        return self._with_decisions(response, method)

    @staticmethod
    def _with_decisions(response: Response, method: CLVS) -> Response:
        response.extras = [{"decision": {"stop_layer": layer}} for layer in method.stop_layer]
        return response
