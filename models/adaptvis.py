"""AdaptVis as the engine runs it (``--model vlm_adaptvis``, any family; ``qwen3vl_adaptvis``, Qwen3-VL).

Two passes per batch over one shared prefix: the prompt's first N - 1 positions (vision tower included) are computed
once (``interventions.prefix``); a plain forward of the last position gives each sequence's confidence (top-1
probability of the first token, the token greedy generation would emit first); the cache is cropped back and
generation continues from a steered forward of the last position, the image logits of its row scaled by that
sequence's ``alpha`` in the selected layers (``interventions.adaptvis``; the confidence as ``confidence_rule`` reads
it). Decode steps are untouched. Settings that give every sequence the same ``alpha`` (whatever their threshold)
share one generation. Cost: about one prefill, not
two. Where the cache cannot be shared, :meth:`AdaptVisRunner.whole_prompt` runs the two whole-prompt passes instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from interventions.adaptvis import AdaptVis, AdaptVisParams
from interventions.layers import parse_layers
from interventions.prefix import PromptPrefix, next_token_logits
from local_tasks.adaptvis_split import task_lineage
from models.batch import GenerationSettings, PreparedBatch, Response
from models.checkpoint import Checkpoint
from models.host import MethodHost, Process
from models.runner import LastRowRunner, Plan
from models.spec import LAYERS_FORMAT, Argument, MethodSpec


@dataclass(frozen=True)
class PerTask:
    """Each sequence of a batch under its task's setting (a preset's ``by_task``), with a setting's interface."""

    rows: tuple

    @property
    def neutral(self) -> bool:
        return all(row.neutral for row in self.rows)

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([row.confidence(logits[b : b + 1]).double() for b, row in enumerate(self.rows)])

    def alphas(self, confidence: torch.Tensor) -> list[float]:
        return [row.alphas(confidence[b : b + 1])[0] for b, row in enumerate(self.rows)]


class AdaptVisRunner(LastRowRunner):
    """AdaptVis: smoothen (low confidence) or sharpen (high) the last row's image attention."""

    per_sequence = True  # each sequence's weight is its own: a preset may set AdaptVis per task

    def default_points(self, batch: PreparedBatch) -> list:
        """The runner's setting, or with a per-task preset (``adaptvis_paper``) each sequence its task's."""
        if not self.by_task:
            return [self.params]
        return [PerTask(tuple(self.task_setting(task) for task in batch.task_names))]

    def task_setting(self, task: str) -> AdaptVisParams:
        """The preset's setting of ``task``, else of the dataset it is a part of (``whatsup_vg_one_adaptvis`` takes
        ``whatsup_vg_one``'s: ``local_tasks.adaptvis_split.task_lineage``), else the runner's."""
        return next((self.by_task[name] for name in task_lineage(task) if name in self.by_task), self.params)

    def check_arguments(self, values: dict[str, Any]) -> None:
        parse_layers(values["layers"], 10**6)  # a malformed value is refused before the checkpoint is loaded

    def set_up(self, host: MethodHost, checkpoint: Checkpoint, process: Process) -> None:
        self.layers_argument = self.values["layers"]
        self.layers = parse_layers(self.layers_argument, checkpoint.depth)

    def arguments(self) -> dict:
        layers = self.layers_argument
        return {**super().arguments(), "layers": layers if isinstance(layers, (str, int)) else list(layers)}

    def plan(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, points: list[AdaptVisParams]) -> Plan:
        """One confidence pass for every setting; settings with the same weights per sequence share a generation."""
        logits = next_token_logits(host.model, prefix)
        keys, confidences = [], {}
        for point in points:
            confidence = point.confidence(logits)
            key = tuple(point.alphas(confidence))
            keys.append(key)
            confidences.setdefault(key, confidence)
        return Plan(keys=keys, context=confidences)

    def editor(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, keys: list, plan: Plan) -> AdaptVis:
        return AdaptVis([alpha for alphas in keys for alpha in alphas], self.layers)

    def annotate(self, response: Response, batch: PreparedBatch, keys: list, editor: Any, plan: Plan) -> None:
        response.extras = [
            {"decision": {"confidence": float(confidence), "alpha": float(alpha)}}
            for alphas in keys
            for confidence, alpha in zip(plan.context[alphas], alphas)
        ]

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: AdaptVisParams
    ) -> Response:
        """The same answers from two whole-prompt passes (images encoded once)."""
        batch = encode_images_once(host, batch)
        confidence = point.confidence(host.prefill_logits(batch))
        alphas = tuple(point.alphas(confidence))
        with host.steering(batch, AdaptVis(list(alphas), self.layers)):
            response = host.generate(batch, settings)
        self.annotate(response, batch, [alphas], None, Plan([], {alphas: confidence}))
        return response

    def neutral(self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: Any) -> Response:
        """Weights 1: exactly the baseline's one whole-prompt pass, in any dtype; the confidence is its first token's."""
        alphas = tuple([1.0] * batch.size)
        with host.steering(batch, AdaptVis(list(alphas), self.layers)):
            response = host.generate(batch, settings)
        confidence = point.confidence(response.first_token_logits)
        self.annotate(response, batch, [alphas], None, Plan([], {alphas: confidence}))
        return response


@torch.inference_mode()
def encode_images_once(host: MethodHost, batch: PreparedBatch) -> PreparedBatch:
    """The batch with its images already encoded, so both whole-prompt passes share one vision-tower run.

    transformers' ``generate`` and ``forward`` accept pre-encoded ``mm_encoder_outputs`` in place of
    ``pixel_values``; the answers are the same, the second vision forward is saved.
    """
    if "pixel_values" not in batch.inputs:
        return batch
    inputs = {key: value for key, value in batch.inputs.items() if key != "pixel_values"}
    features = host.model.get_image_features(**host.family.encoder_inputs(batch.inputs))
    inputs["mm_encoder_outputs"] = {"image": features}
    return dataclasses.replace(batch, inputs=inputs)


ADAPTVIS = MethodSpec(
    name="adaptvis",
    title="AdaptVis",
    summary="the first token's confidence picks a weight per sequence, which scales the last prompt row's "
    "image-attention logits",
    params=AdaptVisParams,
    meanings={
        "confidence_threshold": "confidence below it: `smoothen_weight`, else `sharpen_weight`",
        "sharpen_weight": "`alpha` for confident sequences",
        "smoothen_weight": "`alpha` for unsure sequences",
        "confidence_rule": "`probability` (top-1 softmax); the authors' code: `probability_rounded` (2 decimals, "
        "WhatsUp), `max_logit_rounded` (top-1 raw logit, VSR)",
    },
    extra=(Argument("layers", "all", LAYERS_FORMAT),),
    sweepable=("confidence_threshold", "sharpen_weight", "smoothen_weight"),
    sliders={
        "confidence_threshold": (0.0, 1.0, 0.01),
        "sharpen_weight": (1.0, 3.0, 0.05),
        "smoothen_weight": (0.0, 1.0, 0.05),
    },  # over the ranges of the study's own demo app
    runner=AdaptVisRunner,
)
