"""Where VEA's evidence layers come from (exactly one source), checked before loading and resolved after it.

- ``layers=[17,20,24]`` (or ``all``, ranges such as ``[0-3,8]``);
- ``layers_file=layers.json`` written by ``python -m profiling``;
- ``coco_annotations_dir=C`` (or ``$COCO_ANNOTATIONS_DIR``) with ``vsr_data_dir=D`` (or ``$VSR_DATA_DIR``): profiled on
  first use on VSR train rows and cached next to the checkpoint (or in ``profile_cache``, or
  ``~/.cache/vsr_attention_steering/vea`` when the checkpoint is not a writable folder); a log line says which file
  was written or reused.

The profiling itself runs above the models (``profiling``, through the engine: ``MethodHost.profile_layers``); what
lives here is what the runner decides from its arguments, the layers file's format and the cache's identity.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from interventions.layers import parse_layers
from models.arguments import is_unset
from models.host import MethodHost, Process, ProfileRequest
from vsr_tasks.data import DATA_DIR_VARIABLE

COCO_ANNOTATIONS_VARIABLE = "COCO_ANNOTATIONS_DIR"
CACHE_ROOT_VARIABLE = "XDG_CACHE_HOME"


class LayerSourceError(ValueError):
    """The layers cannot be found or read; the message names the argument or file to fix."""


def read_layers_file(path: str | Path, num_layers: int | None = None) -> list[int]:
    """The ``layers`` of a profiling JSON, checked against the model's depth."""
    path = Path(path)
    if not path.is_file():
        raise LayerSourceError(f"VEA layers file not found: {path} (write one with python -m profiling)")
    try:
        layers = [int(layer) for layer in json.loads(path.read_text())["layers"]]
    except (ValueError, KeyError, TypeError) as error:
        raise LayerSourceError(f"{path} is not a VEA profiling JSON with a 'layers' list ({error})") from None
    if not layers:
        raise LayerSourceError(f"{path}: 'layers' is empty")
    if num_layers is not None and any(not 0 <= layer < num_layers for layer in layers):
        raise LayerSourceError(f"{path}: layers {layers} outside the model's 0..{num_layers - 1}")
    return layers


def _given(value: Any) -> bool:
    return not is_unset(value)


@dataclass
class LayerSource:
    """The one source of VEA's layers, from the model arguments (``MethodSpec.exclusive``: a preset's ``layers``
    apply only when none of ``layers``, ``layers_file``, ``coco_annotations_dir`` is given explicitly)."""

    kind: str  # "layers", "layers_file" or "profile"
    layers: Any = None
    layers_file: Any = None
    profile: dict | None = None  # the profiling inputs (``kind == "profile"``)
    profile_cache: Any = None

    @classmethod
    def from_arguments(cls, name: str, values: dict[str, Any]) -> LayerSource:
        """The source the arguments name, refused by name before the checkpoint is loaded when there is none, two,
        a malformed ``layers`` or profiling without its train rows."""
        layers, layers_file = values.get("layers"), values.get("layers_file")
        coco_annotations_dir = values.get("coco_annotations_dir")
        given = [key for key, value in (("layers", layers), ("layers_file", layers_file)) if _given(value)]
        if len(given) > 1:
            raise ValueError(f"{name}: give either layers=[...] or layers_file=..., not both")
        profile = {
            "coco_annotations_dir": coco_annotations_dir or os.environ.get(COCO_ANNOTATIONS_VARIABLE),
            "vsr_data_dir": values["vsr_data_dir"] or os.environ.get(DATA_DIR_VARIABLE),
            "dataset_type": values["dataset_type"],
            "samples": int(values["profile_samples"]),
            "layer_top_fraction": float(values["layer_top_fraction"]),
        }
        if given:
            if given == ["layers"]:
                parse_layers(layers, 10**6)  # refuse a malformed value before loading the checkpoint
            return cls(given[0], layers, layers_file, profile, values["profile_cache"])
        if not _given(profile["coco_annotations_dir"]):
            raise ValueError(
                f"{name} needs its evidence layers: layers=[17,20,24], layers_file=layers.json "
                "(python -m profiling), or coco_annotations_dir=... with vsr_data_dir=... "
                f"(or {COCO_ANNOTATIONS_VARIABLE} and {DATA_DIR_VARIABLE}) to profile them on first use"
            )
        if not _given(profile["vsr_data_dir"]):
            raise ValueError(
                f"{name}: profiling the layers needs the VSR train rows: pass vsr_data_dir=... or set "
                f"{DATA_DIR_VARIABLE}"
            )
        return cls("profile", layers, layers_file, profile, values["profile_cache"])

    def resolve(self, name: str, host: MethodHost, pretrained: str, depth: int, process: Process) -> list[int]:
        """The layers on the loaded checkpoint (``depth`` decoder layers); profiling runs on rank 0, once."""
        try:
            if self.kind == "layers":
                return parse_layers(self.layers, depth)
            if self.kind == "layers_file":
                return read_layers_file(self.layers_file, depth)
            return self._profiled(name, host, pretrained, depth, process)
        except LayerSourceError as error:
            raise ValueError(f"{name}: {error}") from None

    def cache_file(self, pretrained: str) -> Path:
        """Where the profiled layers of this checkpoint and these settings are cached."""
        settings = self.profile
        name = (
            f"vea_layers.{settings['dataset_type']}.n{settings['samples']}.top{settings['layer_top_fraction']:g}.json"
        )
        if _given(self.profile_cache):
            return Path(self.profile_cache) / name
        local = Path(pretrained)
        if local.is_dir() and os.access(local, os.W_OK):
            return local / name
        root = Path(os.environ.get(CACHE_ROOT_VARIABLE) or Path.home() / ".cache")
        return root / "vsr_attention_steering" / "vea" / re.sub(r"[^A-Za-z0-9._-]+", "--", str(pretrained)) / name

    def _profiled(self, name: str, host: MethodHost, pretrained: str, depth: int, process: Process) -> list[int]:
        path = self.cache_file(pretrained)
        if process.rank == 0 and not self._cache_matches(path, depth):
            logger.info(f"{name}: profiling layers on VSR train rows; result cached in {path}")
            settings = self.profile
            request = ProfileRequest(
                model=str(pretrained),
                vsr_data_dir=settings["vsr_data_dir"],
                coco_annotations_dir=settings["coco_annotations_dir"],
                dataset_type=settings["dataset_type"],
                samples=settings["samples"],
                layer_top_fraction=settings["layer_top_fraction"],
            )
            record = host.profile_layers(request)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record, indent=2) + "\n")
            temporary.replace(path)
        elif process.rank == 0:
            logger.info(f"{name}: reusing the profiled layers cached in {path} (delete it to profile again)")
        process.wait()
        return read_layers_file(path, depth)

    def _cache_matches(self, path: Path, depth: int) -> bool:
        if not path.is_file():
            return False
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False
        settings = self.profile
        expected = {
            "dataset_type": settings["dataset_type"],
            "samples_requested": settings["samples"],
            "layer_top_fraction": settings["layer_top_fraction"],
            "num_layers": depth,
            "vsr_data_dir": str(Path(settings["vsr_data_dir"])),
            "coco_annotations_dir": str(Path(settings["coco_annotations_dir"])),
        }
        return all(record.get(key) == value for key, value in expected.items())
