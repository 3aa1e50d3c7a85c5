"""CLVS as the engine runs it (``--model vlm_clvs``, any family; ``qwen3vl_clvs``): one pass, see ``interventions.clvs``.

The prompt's first N - 1 positions are computed once (``interventions.prefix``, keeping layer 0's pre-RoPE keys for
the position-unbiased row); generation continues from one steered forward of the last position. The same prefix
serves any number of settings, each row with its own smoothing, memory, threshold and layer 0 (``sweep``).
"""

from __future__ import annotations

from typing import Any

import torch

from interventions.clvs import CLVS, CLVSParams, unbiased_position_ids
from interventions.prefix import PromptPrefix
from models.batch import GenerationSettings, PreparedBatch, Response
from models.methods import CLVS_METHOD
from models.runner import LastRowRunner, Plan


class CLVSRunner(LastRowRunner):
    """Cross-Layer Vision Smoothing of the prefill's last row."""

    SPEC = CLVS_METHOD

    def keeps_layer0_keys(self, points: list[CLVSParams]) -> bool:
        return any(point.position_unbiased for point in points)

    def unbiased_positions(self, engine: Any, batch: PreparedBatch, prefix: PromptPrefix | None = None) -> torch.Tensor:
        """The batch's position-unbiased rotary positions (from the prefix's positions when given)."""
        family = engine.family
        positions = prefix.positions if prefix is not None else family.prompt_positions(engine.model, batch.inputs)[0]
        return unbiased_position_ids(
            family.rope_positions(positions), batch.image_token_mask, batch.inputs.get("attention_mask")
        )

    def method_for(self, engine: Any, batch: PreparedBatch, params: CLVSParams | None = None) -> CLVS:
        """The CLVS editor for one whole-prompt pass under ``params`` (default: the runner's)."""
        params = params or self.params
        positions = self.unbiased_positions(engine, batch) if params.position_unbiased else None
        return CLVS(params, positions, None, engine.family.pre_rope, engine.family.layer0_rotary)

    def plan(self, engine: Any, batch: PreparedBatch, prefix: PromptPrefix, points: list[CLVSParams]) -> Plan:
        """Every setting its own rows; the unbiased positions computed once."""
        positions = self.unbiased_positions(engine, batch, prefix) if self.keeps_layer0_keys(points) else None
        return Plan(keys=list(range(len(points))), context=(points, positions))

    def editor(self, engine: Any, batch: PreparedBatch, prefix: PromptPrefix, keys: list, plan: Plan) -> CLVS:
        points, positions = plan.context
        copies = len(keys)
        rows = [points[key] for key in keys for _ in range(batch.size)]
        tiled = positions.repeat(*([1] * (positions.dim() - 2)), copies, 1) if positions is not None else None
        return CLVS(rows, tiled, prefix.layer0_keys, engine.family.pre_rope, engine.family.layer0_rotary)

    def annotate(self, response: Response, batch: PreparedBatch, keys: list, editor: CLVS, plan: Plan) -> None:
        response.extras = [{"decision": {"stop_layer": layer}} for layer in editor.stop_layer]

    def whole_prompt(
        self, engine: Any, batch: PreparedBatch, settings: GenerationSettings, point: CLVSParams
    ) -> Response:
        """The same answers from one whole-prompt pass (the logit lens still says where smoothing stopped)."""
        editor = self.method_for(engine, batch, point)
        with engine.steering(batch, editor):
            response = engine.generate(batch, settings)
        self.annotate(response, batch, [point], editor, Plan([]))
        return response
