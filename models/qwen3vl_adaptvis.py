"""AdaptVis as an lmms-eval model (``--model qwen3vl_adaptvis``).

Two passes per batch over one shared prefix: the prompt's first N - 1 positions (vision
tower included) are computed once (``interventions.prefix``); a plain forward of the last
position gives each sequence's confidence (top-1 probability of the first token, the token
greedy generation would emit first); the cache is cropped back and generation continues
from a steered forward of the last position, the image logits of its row scaled by that
sequence's ``alpha`` in the selected layers (``interventions.adaptvis``). Decode steps are
untouched. Cost: about one prefill, not two. Where the cache cannot be shared,
:meth:`Qwen3VLAdaptVis.respond_two_pass` runs the two whole-prompt passes instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions import use_steered_attention
from interventions.adaptvis import AdaptVis, AdaptVisParams, first_token_confidence
from interventions.layers import parse_layers
from interventions.prefix import next_token_logits
from models.presets import resolve
from models.qwen3vl import GenerationSettings, PreparedBatch, Qwen3VL, Response


class Qwen3VLAdaptVis(Qwen3VL):
    """Qwen3-VL with AdaptVis: smoothen (low confidence) or sharpen (high) the last row's image attention."""

    MODEL_NAME: ClassVar[str] = "qwen3vl_adaptvis"
    STEERS: ClassVar[bool] = True

    DEFAULTS: ClassVar[dict] = {
        "confidence_threshold": 0.8,
        "sharpen_weight": 1.2,
        "smoothen_weight": 0.2,
        "layers": "all",
    }

    def __init__(
        self,
        confidence_threshold: float | None = None,
        sharpen_weight: float | None = None,
        smoothen_weight: float | None = None,
        layers: str | list[int] | None = None,
        preset: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Unset arguments (None) come from ``preset`` (``models/presets.json``), else from :attr:`DEFAULTS`."""
        given = {
            "confidence_threshold": confidence_threshold,
            "sharpen_weight": sharpen_weight,
            "smoothen_weight": smoothen_weight,
            "layers": layers,
        }
        values, from_preset = resolve(self.MODEL_NAME, preset, given, self.DEFAULTS)
        self.preset = preset
        self.params = AdaptVisParams(
            values["confidence_threshold"], values["sharpen_weight"], values["smoothen_weight"]
        )
        self.layers_argument = values["layers"]
        parse_layers(self.layers_argument, 10**6)  # refuse a malformed value before loading the checkpoint
        super().__init__(**kwargs)
        self.layers = parse_layers(self.layers_argument, self.model.config.text_config.num_hidden_layers)
        use_steered_attention(self.model)
        self.announce_preset(preset, from_preset)

    def method_arguments(self) -> dict:
        return {
            **({"preset": self.preset} if self.preset not in (None, "", "none", "None") else {}),
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
        """One shared prefix; pass 1 (last position, plain) gives the confidence, pass 2 generates steered."""
        return self.respond_grid(batch, settings, [self.params])[0]

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
