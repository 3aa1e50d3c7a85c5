"""VEA as the engine runs it (``--model vlm_vea``, any family; ``qwen3vl_vea``): attribution prefill, highlight, answer.

Per batch: one fused prefill records the last row's head-mean image attention at VEA's layers
(``interventions.recording``, no eager attention); each image's layer-mean evidence grid is
denoised, upsampled, blurred and normalised into a pixel map, and the processed ``pixel_values``
are highlighted in place (``interventions.vea``); generation then runs on the highlighted images.
Prompts without images pass through as in the baseline.

Where the layers come from (exactly one):

- ``layers=[17,20,24]`` (or ``all``, ranges such as ``[0-3,8]``);
- ``layers_file=layers.json`` written by ``python -m profiling``;
- ``coco_annotations_dir=C`` (or ``$COCO_ANNOTATIONS_DIR``) with ``vsr_data_dir=D`` (or
  ``$VSR_DATA_DIR``): profiled on first use on VSR train rows and cached next to the checkpoint
  (or in ``profile_cache``, or ``~/.cache/vsr_attention_steering/vea`` when the checkpoint is not a
  writable folder); a log line says which file was written or reused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from interventions import record_image_attention
from interventions.layers import parse_layers
from interventions.vea import VEAParams, as_uint8_image, denoise, evidence_grids, evidence_pixel_map
from models.arguments import is_unset, unquote
from models.batch import GenerationSettings, PreparedBatch, Response
from models.methods import VEA_METHOD
from models.runner import MethodRunner
from profiling import COCO_ANNOTATIONS_VARIABLE, ProfilingError, read_layers_file, run_profile

HINT = "Focus on the highlighted (brighter) region of the image."
CACHE_ROOT_VARIABLE = "XDG_CACHE_HOME"


def _given(value: Any) -> bool:
    return not is_unset(value)


class VEARunner(MethodRunner):
    """Visual Evidence Augmentation: the image is re-rendered to highlight what the model looked at."""

    SPEC = VEA_METHOD
    steers = False  # it edits the image, not the attention: beam search stays possible

    def check_arguments(self, values: dict[str, Any]) -> None:
        """The layer source and the profiling inputs, checked before the checkpoint is loaded.

        A preset's ``layers`` apply only when no layer source (``layers``, ``layers_file``, ``coco_annotations_dir``)
        is given explicitly (``MethodSpec.exclusive``).
        """
        hint = unquote(values["hint"])
        if not isinstance(hint, bool) and not (isinstance(hint, str) and hint.strip()):
            raise ValueError(f"hint must be true, false or the text to append, got {hint!r}")
        self.hint = hint
        layers, layers_file = values.get("layers"), values.get("layers_file")
        coco_annotations_dir = values.get("coco_annotations_dir")
        self.layer_source = self._check_layer_source(layers, layers_file, coco_annotations_dir)
        self.layers_argument, self.layers_file = layers, layers_file
        self.profile_settings = {
            "coco_annotations_dir": coco_annotations_dir or os.environ.get(COCO_ANNOTATIONS_VARIABLE),
            "vsr_data_dir": values["vsr_data_dir"] or os.environ.get("VSR_DATA_DIR"),
            "dataset_type": values["dataset_type"],
            "samples": int(values["profile_samples"]),
            "layer_top_fraction": float(values["layer_top_fraction"]),
        }
        self.profile_cache = values["profile_cache"]
        if self.layer_source == "profile" and not _given(self.profile_settings["vsr_data_dir"]):
            raise ValueError(
                f"{self.name}: profiling the layers needs the VSR train rows: pass vsr_data_dir=... or set VSR_DATA_DIR"
            )

    def set_up(self, model: Any, checkpoint: Any, rank: int, wait: Any) -> None:
        self.pretrained = checkpoint.pretrained
        self.layout = checkpoint.family.pixel_layout(checkpoint.processor)
        self.layers = self._resolve_layers(model, checkpoint, rank, wait)
        logger.info(f"{self.name}: evidence from layers {self.layers} ({self.layer_source})")

    # ------------------------------------------------------------------ layers
    def _check_layer_source(self, layers: Any, layers_file: Any, coco_annotations_dir: Any) -> str:
        given = [name for name, value in (("layers", layers), ("layers_file", layers_file)) if _given(value)]
        if len(given) > 1:
            raise ValueError(f"{self.name}: give either layers=[...] or layers_file=..., not both")
        if given:
            if given == ["layers"]:
                parse_layers(layers, 10**6)  # refuse a malformed value before loading the checkpoint
            return given[0]
        if _given(coco_annotations_dir) or _given(os.environ.get(COCO_ANNOTATIONS_VARIABLE)):
            return "profile"
        raise ValueError(
            f"{self.name} needs its evidence layers: layers=[17,20,24], layers_file=layers.json "
            "(python -m profiling), or coco_annotations_dir=... with vsr_data_dir=... "
            f"(or {COCO_ANNOTATIONS_VARIABLE} and VSR_DATA_DIR) to profile them on first use"
        )

    def _resolve_layers(self, model: Any, checkpoint: Any, rank: int, wait: Any) -> list[int]:
        num_layers = checkpoint.depth
        if self.layer_source == "layers":
            return parse_layers(self.layers_argument, num_layers)
        if self.layer_source == "layers_file":
            return read_layers_file(self.layers_file, num_layers)
        return self._profiled_layers(model, checkpoint, rank, wait)

    def profile_cache_file(self) -> Path:
        """Where the profiled layers of this checkpoint and these settings are cached."""
        settings = self.profile_settings
        name = (
            f"vea_layers.{settings['dataset_type']}.n{settings['samples']}.top{settings['layer_top_fraction']:g}.json"
        )
        if _given(self.profile_cache):
            return Path(self.profile_cache) / name
        local = Path(self.pretrained)
        if local.is_dir() and os.access(local, os.W_OK):
            return local / name
        root = Path(os.environ.get(CACHE_ROOT_VARIABLE) or Path.home() / ".cache")
        return root / "vsr_attention_steering" / "vea" / re.sub(r"[^A-Za-z0-9._-]+", "--", str(self.pretrained)) / name

    def _profiled_layers(self, model: Any, checkpoint: Any, rank: int, wait: Any) -> list[int]:
        num_layers = checkpoint.depth
        path = self.profile_cache_file()
        if rank == 0 and not self._cache_matches(path, num_layers):
            logger.info(f"{self.name}: profiling layers on VSR train rows; result cached in {path}")
            try:
                record = run_profile(
                    model,
                    checkpoint.processor,
                    checkpoint.family,
                    self.pretrained,
                    self.profile_settings["vsr_data_dir"],
                    self.profile_settings["coco_annotations_dir"],
                    self.profile_settings["dataset_type"],
                    self.profile_settings["samples"],
                    self.profile_settings["layer_top_fraction"],
                )
            except ProfilingError as error:
                raise ValueError(f"{self.name}: {error}") from None
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record, indent=2) + "\n")
            temporary.replace(path)
        elif rank == 0:
            logger.info(f"{self.name}: reusing the profiled layers cached in {path} (delete it to profile again)")
        wait()
        return read_layers_file(path, num_layers)

    def _cache_matches(self, path: Path, num_layers: int) -> bool:
        if not path.is_file():
            return False
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False
        settings = self.profile_settings
        expected = {
            "dataset_type": settings["dataset_type"],
            "samples_requested": settings["samples"],
            "layer_top_fraction": settings["layer_top_fraction"],
            "num_layers": num_layers,
            "vsr_data_dir": str(Path(settings["vsr_data_dir"])),
            "coco_annotations_dir": str(Path(settings["coco_annotations_dir"])),
        }
        return all(record.get(key) == value for key, value in expected.items())

    def arguments(self) -> dict:
        arguments = {**super().arguments(), "hint": self.hint, "layer_source": self.layer_source}
        if self.layer_source == "layers_file":
            arguments["layers_file"] = str(self.layers_file)
        if self.layer_source == "layers":
            arguments["layers"] = list(self.layers) if hasattr(self, "layers") else self.layers_argument
        return arguments

    # ------------------------------------------------------------- answering
    def answer(
        self, engine: Any, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool
    ) -> list[Response]:
        """Answers under each (smooth, highlight, denoise) setting: one attribution pass for all of them (the layers
        are the runner's), then one highlighted pass per setting. Prompts without images are answered once, as by the
        baseline. ``share_neutral`` changes nothing here: a neutral setting's pass is the plain one already."""
        if "pixel_values" not in batch.inputs:
            with engine.steering(batch):
                response = engine.generate(batch, settings)
            return [response] + [response.rows(0, batch.size) for _ in points[1:]]
        grids = self.evidence(engine, batch)
        responses = []
        for params in points:
            highlighted = self.highlight(engine, batch, grids, params)
            with engine.steering(highlighted):
                response = engine.generate(highlighted, settings)
            response.extras = self._extras(engine, batch, grids, highlighted.inputs["pixel_values"], params)
            responses.append(response)
        return responses

    def whole_prompt(
        self, engine: Any, batch: PreparedBatch, settings: GenerationSettings, point: VEAParams
    ) -> Response:
        """VEA shares no prefix: its answer is already made of whole-prompt passes."""
        return self.answer(engine, batch, settings, [point], share_neutral=False)[0]

    def evidence(self, engine: Any, batch: PreparedBatch) -> list[list[torch.Tensor]]:
        """Per sequence, per image: the layer-mean last-row attention grid ``[grid_h, grid_w]`` (one fused prefill)."""
        attention = record_image_attention(engine.model, batch.inputs, batch.image_token_mask, self.layers)
        return [evidence_grids(attention[b], batch.image_tokens[b]) for b in range(batch.size)]

    def highlight(
        self, engine: Any, batch: PreparedBatch, grids: list[list[torch.Tensor]], params: VEAParams | None = None
    ) -> PreparedBatch:
        """The batch the model answers in pass 2: every image highlighted by its evidence map."""
        params = params or self.params
        pixel_maps = [
            evidence_pixel_map(grid.to(engine.device), params, self.layout.token_pixels).float()
            for sequence_grids in grids
            for grid in sequence_grids
        ]
        pixel_values = self.layout.highlight(
            batch.inputs["pixel_values"],
            batch.inputs.get(self.layout.geometry_key),
            pixel_maps,
            params.highlight_strength,
        )
        return self.highlighted_batch(engine, batch, pixel_values)

    def highlighted_batch(self, engine: Any, batch: PreparedBatch, pixel_values: torch.Tensor) -> PreparedBatch:
        """The batch with highlighted ``pixel_values`` (and, with ``hint``, the hint appended to each prompt: ours with
        ``true``, or the text given, as the paper preset gives the authors')."""
        if self.hint:
            hint = HINT if self.hint is True else self.hint
            contexts = [f"{context}\n{hint}" for context in batch.contexts]
            batch = engine.prepare(contexts, batch.visuals, batch.doc_ids, batch.task_names)
        inputs = {key: value for key, value in batch.inputs.items()}
        inputs["pixel_values"] = pixel_values
        return dataclasses.replace(batch, inputs=inputs)

    def _extras(
        self,
        engine: Any,
        batch: PreparedBatch,
        grids: list[list[torch.Tensor]],
        pixel_values: torch.Tensor,
        params: VEAParams,
    ) -> list[dict]:
        decision = {"layers": list(self.layers)}
        if engine.attention_log is None:
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
