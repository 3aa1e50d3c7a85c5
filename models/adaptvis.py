"""AdaptVis as an lmms-eval model (``--model vlm_adaptvis``, any family; ``qwen3vl_adaptvis``, Qwen3-VL).

Two passes per batch over one shared prefix: the prompt's first N - 1 positions (vision
tower included) are computed once (``interventions.prefix``); a plain forward of the last
position gives each sequence's confidence (top-1 probability of the first token, the token
greedy generation would emit first); the cache is cropped back and generation continues
from a steered forward of the last position, the image logits of its row scaled by that
sequence's ``alpha`` in the selected layers (``interventions.adaptvis``). Decode steps are
untouched. Cost: about one prefill, not two. Where the cache cannot be shared,
:meth:`AdaptVisModel.respond_two_pass` runs the two whole-prompt passes instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions.adaptvis import AdaptVis, AdaptVisParams, first_token_confidence
from interventions.layers import parse_layers
from interventions.prefix import next_token_logits
from models.methods import ADAPTVIS, MethodSpec
from models.steered import SteeredModel
from models.vlm import GenerationSettings, PreparedBatch, Response


class AdaptVisModel(SteeredModel):
    """AdaptVis: smoothen (low confidence) or sharpen (high) the last row's image attention."""

    METHOD: ClassVar[MethodSpec] = ADAPTVIS
    STEERS: ClassVar[bool] = True

    def check_arguments(self, values: dict[str, Any]) -> None:
        parse_layers(values["layers"], 10**6)  # a malformed value is refused before the checkpoint is loaded

    def set_up(self, values: dict[str, Any]) -> None:
        self.layers_argument = values["layers"]
        self.layers = parse_layers(self.layers_argument, self.num_layers)

    def method_arguments(self) -> dict:
        layers = self.layers_argument
        return {**super().method_arguments(), "layers": layers if isinstance(layers, (str, int)) else list(layers)}

    @torch.inference_mode()
    def encode_images_once(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch with its images already encoded, so both passes share one vision-tower run.

        transformers' ``generate`` and ``forward`` accept pre-encoded ``mm_encoder_outputs`` in place of
        ``pixel_values``; the answers are the same, the second vision forward is saved.
        """
        if "pixel_values" not in batch.inputs:
            return batch
        inputs = {key: value for key, value in batch.inputs.items() if key != "pixel_values"}
        features = self.model.get_image_features(**self.family.encoder_inputs(batch.inputs))
        inputs["mm_encoder_outputs"] = {"image": features}
        return dataclasses.replace(batch, inputs=inputs)

    def respond_grid(
        self,
        batch: PreparedBatch,
        settings: GenerationSettings,
        points: list[AdaptVisParams],
        share_neutral: bool = False,
    ) -> list[Response]:
        """Answers under each setting, all from one prefix and one confidence pass.

        Settings that give every sequence the same ``alpha`` (whatever their threshold) share one generation, and
        the distinct ones run together, the batch repeated once per setting (at most ``grid_rows`` rows at a time).
        Neutral settings take ``qwen3vl``'s whole-prompt pass (unless ``share_neutral``); without a shareable cache,
        two passes per setting.
        """
        responses: list[Response | None] = [None] * len(points)
        steered = [i for i, point in enumerate(points) if share_neutral or not point.neutral]
        for i in (i for i in range(len(points)) if i not in steered):
            responses[i] = self.respond_neutral(batch, settings)
        if not steered:
            return responses
        prefix = self.prompt_prefix(batch)
        if prefix is None:
            for i in steered:
                responses[i] = self.respond_two_pass(batch, settings, points[i])
            return responses
        confidence = first_token_confidence(next_token_logits(self.model, prefix))
        by_alphas: dict[tuple[float, ...], list[int]] = {}
        for i in steered:
            by_alphas.setdefault(tuple(points[i].alphas(confidence)), []).append(i)
        distinct = list(by_alphas)
        per_pass = max(1, self.grid_rows // batch.size)
        for start in range(0, len(distinct), per_pass):
            group = distinct[start : start + per_pass]
            method = AdaptVis([alpha for alphas in group for alpha in alphas], self.layers)
            expanded = prefix.expanded(len(group))
            response = self.generate_steered(batch, settings, expanded, method, copies=len(group))
            for k, alphas in enumerate(group):
                for i in by_alphas[alphas]:
                    part = response.rows(k * batch.size, (k + 1) * batch.size)
                    responses[i] = self._with_decisions(part, confidence, list(alphas))
        return responses

    def respond_two_pass(
        self, batch: PreparedBatch, settings: GenerationSettings, params: AdaptVisParams | None = None
    ) -> Response:
        """The same answers from two whole-prompt passes (images encoded once): the fallback, and the tests' reference."""
        params = params or self.params
        batch = self.encode_images_once(batch)
        confidence = first_token_confidence(self.prefill_logits(batch))
        alphas = params.alphas(confidence)
        with self.steering(batch, AdaptVis(alphas, self.layers)):
            response = self.generate(batch, settings)
        return self._with_decisions(response, confidence, alphas)

    def respond_neutral(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """Weights 1: exactly ``qwen3vl``'s one whole-prompt pass, in any dtype; the confidence is its first token's."""
        alphas = [1.0] * batch.size
        with self.steering(batch, AdaptVis(alphas, self.layers)):
            response = self.generate(batch, settings)
        confidence = response.first_token_probs.max(dim=-1).values
        return self._with_decisions(response, confidence, alphas)

    @staticmethod
    def _with_decisions(response: Response, confidence: torch.Tensor, alphas: list[float]) -> Response:
        response.extras = [
            {"decision": {"confidence": float(c), "alpha": float(a)}} for c, a in zip(confidence, alphas)
        ]
        return response
