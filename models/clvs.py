"""CLVS as the engine runs it (``--model vlm_clvs``, any family; ``qwen3vl_clvs``): one pass, see ``interventions.clvs``.

The prompt's first N - 1 positions are computed once (``interventions.prefix``, keeping layer 0's pre-RoPE keys for
the position-unbiased row); generation continues from one steered forward of the last position. The same prefix
serves any number of settings, each row with its own smoothing, memory, threshold and layer 0 (``sweep``).
"""

from __future__ import annotations

import torch

from interventions.clvs import CLVS, CLVSParams, unbiased_position_ids
from interventions.prefix import PromptPrefix
from models.batch import GenerationSettings, PreparedBatch, Response
from models.host import MethodHost
from models.runner import LastRowRunner, Plan
from models.spec import MethodSpec


class CLVSRunner(LastRowRunner):
    """Cross-Layer Vision Smoothing of the prefill's last row."""

    def keeps_layer0_keys(self, points: list[CLVSParams]) -> bool:
        return any(point.position_unbiased for point in points)

    def unbiased_positions(
        self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix | None = None
    ) -> torch.Tensor:
        """The batch's position-unbiased rotary positions (from the prefix's positions when given)."""
        family = host.family
        positions = prefix.positions if prefix is not None else family.prompt_positions(host.model, batch.inputs)[0]
        return unbiased_position_ids(
            family.rope_positions(positions), batch.image_token_mask, batch.inputs.get("attention_mask")
        )

    def method_for(self, host: MethodHost, batch: PreparedBatch, params: CLVSParams | None = None) -> CLVS:
        """The CLVS editor for one whole-prompt pass under ``params`` (default: the runner's)."""
        params = params or self.params
        positions = self.unbiased_positions(host, batch) if params.position_unbiased else None
        return CLVS(params, positions, None, host.family.pre_rope, host.family.layer0_rotary)

    def plan(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, points: list[CLVSParams]) -> Plan:
        """Every setting its own rows; the unbiased positions computed once."""
        positions = self.unbiased_positions(host, batch, prefix) if self.keeps_layer0_keys(points) else None
        return Plan(keys=list(range(len(points))), context=(points, positions))

    def editor(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, keys: list, plan: Plan) -> CLVS:
        points, positions = plan.context
        copies = len(keys)
        rows = [points[key] for key in keys for _ in range(batch.size)]
        tiled = positions.repeat(*([1] * (positions.dim() - 2)), copies, 1) if positions is not None else None
        return CLVS(rows, tiled, prefix.layer0_keys, host.family.pre_rope, host.family.layer0_rotary)

    def annotate(self, response: Response, batch: PreparedBatch, keys: list, editor: CLVS, plan: Plan) -> None:
        response.extras = [{"decision": {"stop_layer": layer}} for layer in editor.stop_layer]

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: CLVSParams
    ) -> Response:
        """The same answers from one whole-prompt pass (the logit lens still says where smoothing stopped)."""
        editor = self.method_for(host, batch, point)
        with host.steering(batch, editor):
            response = host.generate(batch, settings)
        self.annotate(response, batch, [point], editor, Plan([]))
        return response


CLVS_METHOD = MethodSpec(
    name="clvs",
    title="CLVS",
    summary="a position-unbiased layer 0 and a vision memory mixed into later layers' last row, stopped per sequence "
    "by the logit lens",
    params=CLVSParams,
    meanings={
        "smoothing": "`s` in `w_I <- s * w_I + (1 - s) * m` (1: no mixing)",
        "window_memory_size": "`r` in `m <- r * m + (1 - r) * max_heads(w_I)`",
        "uncertainty_threshold": "normalised top-10 logit-lens entropy below which smoothing stops (layers `l > L // 2`)",
        "position_unbiased": "layer 0's last row with each image at one position (`false`: plain layer 0)",
        "logit_lens_norm": "the final norm before `lm_head` in the logit lens (`false`: the authors' code)",
    },
    extra=(),
    sweepable=("smoothing", "window_memory_size", "uncertainty_threshold"),
    sliders={
        "smoothing": (0.0, 1.0, 0.05),
        "window_memory_size": (0.0, 1.0, 0.05),
        "uncertainty_threshold": (0.0, 1.0, 0.05),
    },
    runner=CLVSRunner,
)
