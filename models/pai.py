"""PAI as the engine runs it (``--model vlm_pai``, any family; ``qwen3vl_pai``): see ``interventions.pai``.

The attention edit touches the row that chooses each token (the prompt's last row, then each decoding step's row), so
the prompt's first N - 1 positions are shared by every setting of a sweep as for AdaptVis (``interventions.prefix``),
the settings run together, the batch repeated once per setting; a single setting is one whole-prompt pass (nothing to
share, and no extra one-token forward). The guidance decodes the prompt without its image beside the answer, one
token per step on its own cache (:class:`ImageFreeGuidance`): its first N_u - 1 positions are computed once per
batch, also shared by every setting. Its cost: the image-free prompt's prefill (no image tokens: a small share of the
image prompt's) and one more one-token forward per generated token.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from interventions.pai import PAI, PAIParams, guided_scores
from interventions.prefix import PromptPrefix
from interventions.state import suspended
from models.batch import GenerationSettings, PreparedBatch, Response
from models.host import MethodHost
from models.runner import LastRowRunner, LayerRangeArguments, Plan
from models.spec import MethodSpec


class ImageFreeGuidance(LogitsProcessor):
    """PAI's guidance for one generation: each step's scores refined against the image-free prompt's, whose tokens
    follow the answer's (the token chosen is fed to both); the image-free pass runs unsteered."""

    def __init__(self, host: MethodHost, image_free: PromptPrefix, gammas: torch.Tensor, copies: int) -> None:
        self.host = host
        self.prefix = image_free.expanded(copies)  # copies == 1: the shared prefix itself, cropped back below
        self.gammas = gammas
        self.step = 0
        self.attention_mask = self.prefix.inputs["attention_mask"]
        self.positions = self.prefix.positions[..., -1:]

    @torch.inference_mode()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        model = self.host.model
        with suspended():  # the image-free pass is never edited (LALBJ/PAI 9bbd8bd CFG.py:32-33, 48-49)
            if self.step == 0:
                extra = self.prefix.cache.get_seq_length() - (self.prefix.prompt_length - 1)
                if extra > 0:  # an earlier generation of the same settings group left its tokens
                    self.prefix.cache.crop(-extra)
                output = model(**self.prefix.last_position_inputs(), logits_to_keep=1)
            else:
                ones = torch.ones_like(self.attention_mask[:, :1])
                self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
                self.positions = self.positions + 1
                output = model(
                    input_ids=input_ids[:, -1:],
                    attention_mask=self.attention_mask,
                    position_ids=self.positions,
                    cache=self.prefix.cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        self.step += 1
        return guided_scores(scores, output.logits[:, -1], self.gammas).to(scores.dtype)


class PAIRunner(LayerRangeArguments, LastRowRunner):
    """Paying More Attention to Image: the image logits amplified, the scores guided against the image-free prompt."""

    def shares_prefix(self, settings: int) -> bool:
        """From two settings on (a sweep): one setting decides nothing from the prefix, and its whole-prompt pass
        saves the prefix's extra one-token forward."""
        return settings > 1

    def plan(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, points: list[PAIParams]) -> Plan:
        """Every setting its own rows; the image-free prompt's prefix computed once when a setting guides."""
        image_free = self.image_free_prefix(host, batch) if any(point.guided for point in points) else None
        return Plan(keys=list(range(len(points))), context=(points, image_free))

    def image_free_prefix(self, host: MethodHost, batch: PreparedBatch) -> PromptPrefix:
        prefix = host.prompt_prefix(host.image_free(batch))
        if prefix is None:
            raise ValueError(
                f"{self.name}: the image-free prompt cannot be decoded beside the answer (see the warning)"
            )
        return prefix

    def rows(self, batch: PreparedBatch, points: list[PAIParams], keys: list) -> list[PAIParams]:
        return [points[key] for key in keys for _ in range(batch.size)]

    def editor(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, keys: list, plan: Plan) -> PAI:
        return self.pai(self.rows(batch, plan.context[0], keys))

    def pai(self, rows: list[PAIParams]) -> PAI:
        layers = [row.layers(self.depth) for row in rows]
        return PAI([row.alpha for row in rows], layers, [row.edit_first_token for row in rows])

    def guidance(self, host: MethodHost, batch: PreparedBatch, keys: list, plan: Plan) -> ImageFreeGuidance | None:
        points, image_free = plan.context
        rows = self.rows(batch, points, keys)
        if not any(row.guided for row in rows):
            return None
        gammas = torch.tensor([float(row.gamma) for row in rows])
        return ImageFreeGuidance(host, image_free, gammas, copies=len(keys))

    def annotate(self, response: Response, batch: PreparedBatch, keys: list, editor: Any, plan: Plan) -> None:
        response.extras = [
            {
                "decision": {
                    "alpha": float(row.alpha),
                    "gamma": float(row.gamma),
                    "layers": [row.start_layer, row.layers(self.depth).stop],
                    "edit_first_token": row.edit_first_token,
                }
            }
            for row in self.rows(batch, plan.context[0], keys)
        ]

    def neutral(self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: Any) -> Response:
        """No edit, no guidance: the baseline's own pass, bit for bit."""
        with host.steering(batch):
            response = host.generate(batch, settings)
        self.annotate(response, batch, [0], None, Plan([], ([point], None)))
        return response

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: PAIParams
    ) -> Response:
        """The same answers from one whole-prompt pass (and the image-free prompt's, with guidance)."""
        plan = self.plan(host, batch, None, [point])
        guidance = self.guidance(host, batch, [0], plan)
        with host.steering(batch, self.pai(self.rows(batch, [point], [0]))):
            response = host.generate(batch, settings, guidance=guidance)
        self.annotate(response, batch, [0], None, plan)
        return response


PAI_METHOD = MethodSpec(
    name="pai",
    title="PAI",
    summary="the image logits of the row choosing each token amplified (`a + alpha |a|`) in a band of layers; "
    "optionally every step's scores guided against the prompt without its image",
    params=PAIParams,
    meanings={
        "alpha": "`a <- a + alpha * |a|` on the image logits of the row choosing each token (`0`: no edit)",
        "gamma": "guidance `gamma * (s - u) + u` against the image-free prompt's log-probabilities `u` (`1`: none)",
        "start_layer": "the first edited layer (0-based)",
        "end_layer": "the edited layers end before it (none: the model's depth; 32 is LLaVA-1.5-7B's)",
        "edit_first_token": "the row choosing the first token is edited too (`false`: as the authors' code with "
        "guidance, which leaves it unedited)",
    },
    extra=(),
    sweepable=("alpha", "gamma"),
    sliders={"alpha": (0.0, 1.0, 0.05), "gamma": (1.0, 2.0, 0.05)},
    runner=PAIRunner,
)
