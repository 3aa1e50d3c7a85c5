"""VEA as the engine runs it (``--model vlm_vea``, any family; ``qwen3vl_vea``): attribution prefill, highlight, answer.

Per batch: one fused prefill records the last row's head-mean image attention at VEA's layers
(``interventions.recording``, no eager attention); each image's layer-mean evidence grid is
denoised, upsampled, blurred and normalised into a pixel map, and the processed ``pixel_values``
are highlighted in place (``interventions.vea``); generation then runs on the highlighted images.
Prompts without images pass through as in the baseline. Where the layers come from: ``models.vea_layers``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from loguru import logger

from interventions import record_image_attention
from interventions.vea import VEAParams, as_uint8_image, denoise, evidence_grids, evidence_pixel_map
from models.arguments import unquote
from models.batch import GenerationSettings, PreparedBatch, Response
from models.checkpoint import Checkpoint
from models.host import MethodHost, Process
from models.runner import MethodRunner
from models.spec import Argument, MethodSpec
from models.vea_layers import COCO_ANNOTATIONS_VARIABLE, LayerSource
from vsr_tasks.data import DATA_DIR_VARIABLE

HINT = "Focus on the highlighted (brighter) region of the image."


class VEARunner(MethodRunner):
    """Visual Evidence Augmentation: the image is re-rendered to highlight what the model looked at."""

    steers = False  # it edits the image, not the attention: beam search stays possible

    def check_arguments(self, values: dict[str, Any]) -> None:
        """The hint and the layer source (``models.vea_layers``), checked before the checkpoint is loaded."""
        hint = unquote(values["hint"])
        if not isinstance(hint, bool) and not (isinstance(hint, str) and hint.strip()):
            raise ValueError(f"hint must be true, false or the text to append, got {hint!r}")
        self.hint = hint
        self.source = LayerSource.from_arguments(self.name, values)
        self.layer_source = self.source.kind

    def set_up(self, host: MethodHost, checkpoint: Checkpoint, process: Process) -> None:
        self.layout = checkpoint.family.pixel_layout(checkpoint.processor)
        self.layers = self.source.resolve(self.name, host, checkpoint.pretrained, checkpoint.depth, process)
        logger.info(f"{self.name}: evidence from layers {self.layers} ({self.layer_source})")

    def arguments(self) -> dict:
        arguments = {**super().arguments(), "hint": self.hint, "layer_source": self.layer_source}
        if self.layer_source == "layers_file":
            arguments["layers_file"] = str(self.source.layers_file)
        if self.layer_source == "layers":
            arguments["layers"] = list(self.layers) if hasattr(self, "layers") else self.source.layers
        return arguments

    # ------------------------------------------------------------- answering
    def answer(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool
    ) -> list[Response]:
        """Answers under each (smooth, highlight, denoise) setting: one attribution pass for all of them (the layers
        are the runner's), then one highlighted pass per setting. Prompts without images are answered once, as by the
        baseline. ``share_neutral`` changes nothing here: a neutral setting's pass is the plain one already."""
        if "pixel_values" not in batch.inputs:
            with host.steering(batch):
                response = host.generate(batch, settings)
            return [response] + [response.rows(0, batch.size) for _ in points[1:]]
        grids = self.evidence(host, batch)
        responses = []
        for params in points:
            highlighted = self.highlight(host, batch, grids, params)
            with host.steering(highlighted):
                response = host.generate(highlighted, settings)
            response.extras = self._extras(host, batch, grids, highlighted.inputs["pixel_values"], params)
            responses.append(response)
        return responses

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: VEAParams
    ) -> Response:
        """VEA shares no prefix: its answer is already made of whole-prompt passes."""
        return self.answer(host, batch, settings, [point], share_neutral=False)[0]

    def evidence(self, host: MethodHost, batch: PreparedBatch) -> list[list[torch.Tensor]]:
        """Per sequence, per image: the layer-mean last-row attention grid ``[grid_h, grid_w]`` (one fused prefill)."""
        attention = record_image_attention(host.model, batch.inputs, batch.image_token_mask, self.layers)
        return [evidence_grids(attention[b], batch.image_tokens[b]) for b in range(batch.size)]

    def highlight(
        self, host: MethodHost, batch: PreparedBatch, grids: list[list[torch.Tensor]], params: VEAParams | None = None
    ) -> PreparedBatch:
        """The batch the model answers in pass 2: every image highlighted by its evidence map."""
        params = params or self.params
        pixel_maps = [
            evidence_pixel_map(grid.to(host.device), params, self.layout.token_pixels).float()
            for sequence_grids in grids
            for grid in sequence_grids
        ]
        pixel_values = self.layout.highlight(
            batch.inputs["pixel_values"],
            batch.inputs.get(self.layout.geometry_key),
            pixel_maps,
            params.highlight_strength,
        )
        return self.highlighted_batch(host, batch, pixel_values)

    def highlighted_batch(self, host: MethodHost, batch: PreparedBatch, pixel_values: torch.Tensor) -> PreparedBatch:
        """The batch with highlighted ``pixel_values`` (and, with ``hint``, the hint appended to each prompt: ours with
        ``true``, or the text given, as the paper preset gives the authors')."""
        if self.hint:
            hint = HINT if self.hint is True else self.hint
            contexts = [f"{context}\n{hint}" for context in batch.contexts]
            batch = host.prepare(contexts, batch.visuals, batch.doc_ids, batch.task_names)
        inputs = {key: value for key, value in batch.inputs.items()}
        inputs["pixel_values"] = pixel_values
        return dataclasses.replace(batch, inputs=inputs)

    def _extras(
        self,
        host: MethodHost,
        batch: PreparedBatch,
        grids: list[list[torch.Tensor]],
        pixel_values: torch.Tensor,
        params: VEAParams,
    ) -> list[dict]:
        decision = {"layers": list(self.layers)}
        if not host.logs_attention:
            return [{"decision": decision} for _ in range(batch.size)]
        images = iter(self.layout.images(pixel_values, batch.inputs.get(self.layout.geometry_key)))
        extras = []
        for b in range(batch.size):
            arrays: dict[str, np.ndarray] = {}
            for k, grid in enumerate(grids[b]):
                arrays[f"evidence_{k}"] = denoise(grid, params.denoise_lambda).numpy().astype(np.float32)
                arrays[f"highlighted_{k}"] = as_uint8_image(next(images))
            extras.append({"decision": decision, "maps": arrays})
        return extras


PROFILING = "profiling"
VEA_METHOD = MethodSpec(
    name="vea",
    title="VEA",
    summary="where the model looked, read from a few layers' attention, re-renders the image; the answer comes from "
    "the highlighted image",
    params=VEAParams,
    meanings={
        "smooth_strength": "blur sigma as a share of the image's short side (`0`: no blur)",
        "highlight_strength": "brightness kept where the map is 0 (`1`: no change)",
        "denoise_lambda": "spike threshold of the denoising",
    },
    extra=(
        Argument("layers", None, "evidence layers, written as for AdaptVis"),
        Argument("layers_file", None, "a JSON written by `python -m profiling`"),
        Argument(
            "coco_annotations_dir",
            None,
            "profile the layers on first use on VSR train rows (its arguments: "
            "[METHODS.md](METHODS.md#layer-profiling))",
            shown=f"`${COCO_ANNOTATIONS_VARIABLE}`",
        ),
        Argument("hint", False, '`true`: append "Focus on the highlighted (brighter) region of the image."; or a text'),
        Argument("vsr_data_dir", None, "where the train rows are", shown=f"`${DATA_DIR_VARIABLE}`", group=PROFILING),
        Argument("dataset_type", "random", "which train split profiles (`random` or `zeroshot`)", group=PROFILING),
        Argument("profile_samples", 100, "usable train rows to profile on", group=PROFILING),
        Argument("layer_top_fraction", 0.1, "share of layers kept (rounded up, at least one)", group=PROFILING),
        Argument(
            "profile_cache",
            None,
            "folder for the JSON; a hub id or a read-only folder uses `~/.cache/vsr_attention_steering/vea/`",
            shown="next to the checkpoint",
            group=PROFILING,
        ),
    ),
    sweepable=("smooth_strength", "highlight_strength", "denoise_lambda"),
    sliders={"smooth_strength": (0.0, 1.0, 0.05), "highlight_strength": (0.0, 1.0, 0.05)},
    runner=VEARunner,
    exclusive=("layers", "layers_file", "coco_annotations_dir"),
    needs_image_grid=True,
)
