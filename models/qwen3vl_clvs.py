"""CLVS as an lmms-eval model (``--model qwen3vl_clvs``): one pass, see ``interventions.clvs``.

The prompt's first N - 1 positions are computed once (``interventions.prefix``, keeping layer 0's
pre-RoPE keys for the position-unbiased row); generation continues from one steered forward of
the last position. The same prefix can serve any number of settings (``sweep``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

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

    def unbiased_positions(self, batch: PreparedBatch, prefix: PromptPrefix | None = None) -> torch.Tensor:
        """``[3, B, N]`` position-unbiased M-RoPE positions of the batch (from the prefix's positions when given)."""
        inputs = batch.inputs
        return unbiased_position_ids(
            self.model,
            inputs["input_ids"],
            inputs.get("attention_mask"),
            inputs.get("mm_token_type_ids"),
            inputs.get("image_grid_thw"),
            positions=prefix.positions[1:] if prefix is not None else None,
        )

    def method_for(
        self, batch: PreparedBatch, prefix: PromptPrefix | None = None, params: CLVSParams | None = None
    ) -> CLVS:
        """The CLVS state for one batch under ``params`` (default: the model's).

        With ``prefix``, layer 0's keys of positions 0..N-2 come from it (the last position then runs alone).
        """
        params = params or self.params
        positions = self.unbiased_positions(batch, prefix) if params.position_unbiased else None
        prefix_keys = prefix.layer0_keys if prefix is not None else None
        return CLVS(params, positions, prefix_keys=prefix_keys)

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """The shared prefix, then generation from one steered forward of the last position."""
        return self.respond_grid(batch, settings, [self.params])[0]

    def respond_grid(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        points: list[CLVSParams],
        share_neutral: bool = False,
    ) -> list[Response]:
        """Answers under each setting from one prefix: the settings run together, the batch repeated once per setting
        (at most ``grid_rows`` rows at a time), each row with its own smoothing, memory, threshold and layer 0.

        Neutral settings take the whole-prompt pass (unless ``share_neutral``): exactly ``qwen3vl``'s computation in
        any dtype (the logit lens still reports where smoothing would have stopped). Without a shareable cache: one
        whole-prompt pass each.
        """
        responses: list[Response | None] = [None] * len(points)
        steered = [i for i, point in enumerate(points) if share_neutral or not point.neutral]
        for i in (i for i in range(len(points)) if i not in steered):
            responses[i] = self.respond_whole_prompt(batch, settings, points[i])
        if not steered:
            return responses
        unbiased = any(points[i].position_unbiased for i in steered)
        prefix = self.prompt_prefix(batch, keep_layer0_keys=unbiased)
        if prefix is None:
            for i in steered:
                responses[i] = self.respond_whole_prompt(batch, settings, points[i])
            return responses
        positions = self.unbiased_positions(batch, prefix) if unbiased else None
        per_pass = max(1, self.grid_rows // batch.size)
        for start in range(0, len(steered), per_pass):
            group = steered[start : start + per_pass]
            copies = len(group)
            rows = [points[i] for i in group for _ in range(batch.size)]
            expanded = prefix.expanded(copies)
            method = CLVS(
                rows,
                positions.repeat(1, copies, 1) if positions is not None else None,
                prefix_keys=expanded.layer0_keys,
            )
            response = self._with_decisions(self.generate_steered(batch, settings, expanded, method, copies), method)
            for k, i in enumerate(group):
                responses[i] = response.rows(k * batch.size, (k + 1) * batch.size)
        return responses

    def respond_whole_prompt(
        self, batch: PreparedBatch, settings: GenerationSettings, params: CLVSParams | None = None
    ) -> Response:
        """The same answers from one whole-prompt pass: the fallback, and the tests' reference."""
        method = self.method_for(batch, params=params)
        with self.steering(batch, method):
            response = self.generate(batch, settings)
        return self._with_decisions(response, method)

    @staticmethod
    def _with_decisions(response: Response, method: CLVS) -> Response:
        response.extras = [{"decision": {"stop_layer": layer}} for layer in method.stop_layer]
        return response
