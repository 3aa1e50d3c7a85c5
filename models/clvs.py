"""CLVS as an lmms-eval model (``--model vlm_clvs``, any family; ``qwen3vl_clvs``): one pass, see ``interventions.clvs``.

The prompt's first N - 1 positions are computed once (``interventions.prefix``, keeping layer 0's
pre-RoPE keys for the position-unbiased row); generation continues from one steered forward of
the last position. The same prefix can serve any number of settings (``sweep``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from interventions.clvs import CLVS, CLVSParams, unbiased_position_ids
from interventions.prefix import PromptPrefix
from models.methods import CLVS_METHOD, MethodSpec
from models.steered import SteeredModel
from models.vlm import GenerationSettings, PreparedBatch, Response


class CLVSModel(SteeredModel):
    """Cross-Layer Vision Smoothing of the prefill's last row."""

    METHOD: ClassVar[MethodSpec] = CLVS_METHOD
    STEERS: ClassVar[bool] = True

    def unbiased_positions(self, batch: PreparedBatch, prefix: PromptPrefix | None = None) -> torch.Tensor:
        """The batch's position-unbiased rotary positions (from the prefix's positions when given)."""
        positions = (
            prefix.positions if prefix is not None else self.family.prompt_positions(self.model, batch.inputs)[0]
        )
        return unbiased_position_ids(
            self.family.rope_positions(positions), batch.image_token_mask, batch.inputs.get("attention_mask")
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
        return CLVS(params, positions, prefix_keys=prefix_keys, pre_rope=self.family.pre_rope)

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
                positions.repeat(*([1] * (positions.dim() - 2)), copies, 1) if positions is not None else None,
                prefix_keys=expanded.layer0_keys,
                pre_rope=self.family.pre_rope,
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
