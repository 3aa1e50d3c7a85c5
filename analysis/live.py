"""Live re-runs for the viewer: one document answered again by a method at the user's settings.

``analysis/`` loads no model at import time: the model classes are imported and the checkpoint loaded on the
first request (one engine per method, ``plugin.loading.engine_for``, then kept). Each answer goes through the engine
(``models.engine``: ``prepare``, ``respond``) with the attention log writing into the request's cache folder, so the
heatmap is drawn from a real log record by the report's own drawing code. Results are cached on disk, keyed by
checkpoint, method, settings, task and doc_id: the same request is instant the second time. One request runs
at a time (a lock), never two model calls at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from analysis.attention import layer_selection
from analysis.document_images import load_image
from analysis.heatmaps import Panel, draw_panels, mean_map
from models.attention_log import read_attention_log

if TYPE_CHECKING:
    from models.checkpoint import Checkpoint


class LiveError(ValueError):
    """The live checkpoint cannot be used; the message says why."""


@dataclass
class LiveResult:
    answer: str
    confidence: float | None
    decision: dict
    heatmap: str | None
    cached: bool = False


def check_checkpoint(path: str | Path) -> Checkpoint:
    """Refuse, at start-up, a folder that is not a checkpoint of a supported family (no weights are loaded here: the
    checkpoint is resolved as every command resolves one)."""
    from models.checkpoint import Checkpoint

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise LiveError(f"--live {folder}: no config.json there; pass a checkpoint folder")
    try:
        return Checkpoint.resolve(str(folder.resolve()), model_name=f"--live {folder}")
    except ValueError as error:
        raise LiveError(str(error)) from None


def live_models(model_type: str) -> dict:
    """Model name -> method, for the live re-runs of a checkpoint of ``model_type``: the study's ``qwen3vl_*`` names on
    a Qwen3-VL checkpoint (they match its runs), the family-detecting ``vlm_*`` models on any other."""
    from models.methods import METHODS
    from models.names import model_name

    return {model_name(method.name, model_type): method for method in METHODS.values()}


class LiveModel:
    """One checkpoint, its method engines (made on first use) and the on-disk cache of answers."""

    def __init__(self, checkpoint: str | Path, cache_dir: Path, device: str | None = None) -> None:
        self.resolved = check_checkpoint(checkpoint)
        self.checkpoint = Path(self.resolved.pretrained)
        self.models = live_models(self.resolved.model_type)  # model name -> method
        self.cache_dir = Path(cache_dir) / "live"
        self.device = device
        self._engines: dict[str, object] = {}
        self._lock = threading.Lock()
        self.calls = 0  # model calls made (cache hits excluded)

    def default_vea_layers(self) -> str:
        """The study's profiled layers scaled to this checkpoint's depth (``models.presets.scaled_vea_layers``)."""
        from interventions.layers import format_layers
        from models.presets import scaled_vea_layers

        return format_layers(scaled_vea_layers(self.resolved.depth))

    def key(self, method: str, settings: dict, task: str, doc_id: int) -> str:
        text = json.dumps([str(self.checkpoint), method, settings, task, int(doc_id)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def run(
        self,
        method: str,
        settings: dict,
        task: str,
        doc_id: int,
        prompt: str,
        images: list,
        layer: int | None = None,
        *,
        max_new_tokens: int,
    ) -> LiveResult:
        """The document answered by ``method`` at ``settings`` (from the cache when it was asked before).

        ``images``: file paths or PIL images, as a task's ``doc_to_visual`` gives them."""
        if method not in self.models:
            raise LiveError(f"unknown method {method!r}; choose {', '.join(self.models)}")
        folder = self.cache_dir / self.key(method, settings, task, doc_id)
        result_file = folder / "result.json"
        with self._lock:
            cached = result_file.is_file()
            if cached:
                result = LiveResult(**{**json.loads(result_file.read_text()), "cached": True})
            else:
                result = self._answer(method, settings, task, doc_id, prompt, images, folder, max_new_tokens)
                result_file.write_text(json.dumps(asdict(result)))
            result.heatmap = self._heatmap(folder, method, task, doc_id, images, layer, result.answer)
            return result

    def _engine(self, method: str, settings: dict):
        if method not in self._engines:
            from plugin.loading import engine_for

            spec = self.models[method]
            accepted = {argument.name for argument in spec.arguments()}  # the run's own (a layer range, ...)
            extra = {key: value for key, value in settings.items() if key in accepted and key != "preset"}
            if spec.name == "vea":  # the logged run's layers, else late layers as profiling picks them
                extra["layers"] = settings.get("layers") or self.default_vea_layers()
            self._engines[method] = engine_for(method, pretrained=str(self.checkpoint), device=self.device, **extra)
        return self._engines[method]

    def _answer(self, method, settings, task, doc_id, prompt, images, folder: Path, max_new_tokens: int) -> LiveResult:
        from models.attention_log import AttentionLogWriter
        from models.batch import GenerationSettings

        engine = self._engine(method, settings)
        params_class = self.models[method].params
        values = {k: v for k, v in settings.items() if k in params_class.__dataclass_fields__}
        point = params_class(**{**asdict(engine.method.params), **values})
        batch = engine.prepare([prompt], [list(images)], [doc_id], [task])
        shown = {**engine.method.arguments(), **asdict(point)}
        writer = AttentionLogWriter(folder, 0, method, engine.depth, shown)
        self.calls += 1
        with engine.logging_to(writer):
            response = engine.respond(batch, GenerationSettings(max_new_tokens=max_new_tokens), point)
            engine.finish(batch, response, response.texts)
        decision = response.extras[0].get("decision", {}) if response.extras else {}
        confidence = float(response.first_token_probs[0].max())
        return LiveResult(response.texts[0], confidence, decision, None)

    @staticmethod
    def _heatmap(folder: Path, method: str, task: str, doc_id: int, images: list, layer, answer: str) -> str | None:
        log = read_attention_log(folder)
        record = log.get(task, doc_id)
        if record is None or record.maps_file is None:
            return None
        maps = log.maps(record)
        layers = layer_selection(record.num_layers, layer)
        region, frame = record.cover(0)
        panels = [Panel(title=f"{method} (live)", attention=mean_map(maps, layers), region=region, region_frame=frame)]
        if "highlighted_0" in maps:
            panels.append(Panel(title="highlighted image", picture=np.asarray(maps["highlighted_0"], dtype=np.uint8)))
        path = folder / f"heatmap_layer{'mean' if layer is None else layer}.png"
        if path.is_file():
            return str(path)
        first = images[0] if images else None
        picture = np.asarray(first.convert("RGB")) if isinstance(first, Image.Image) else load_image(first)
        draw_panels(path, picture, panels, [f"{task} doc {doc_id}, live {method}: {answer!r}"])
        return str(path)
