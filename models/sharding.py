"""Where a model's weights go: one device (the default), or sharded across devices by accelerate's ``device_map``.

``device_map=auto`` (or ``balanced``, ``balanced_low_0``, ``sequential``, or a JSON file mapping module names to
devices) lets one process hold a model too large for one GPU: transformers places each layer on a device, and
accelerate's hooks move each layer's inputs to it. ``max_memory`` caps what each device takes
(``0:70GiB;1:70GiB;cpu:200GiB``: semicolons, since ``--model_args`` splits on commas); ``offload_folder`` holds
the layers mapped to ``disk``. The methods compute on each layer's own device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.arguments import is_unset

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_MEMORY = re.compile(r"^\s*([A-Za-z0-9_:]+)\s*:\s*([0-9.]+\s*[KMGT]i?B)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Placement:
    """``from_pretrained``'s placement arguments; empty when the model goes to one device."""

    device_map: str | dict | None = None
    max_memory: dict | None = None
    offload_folder: str | None = None

    @property
    def sharded(self) -> bool:
        return self.device_map is not None

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.max_memory is not None:
            kwargs["max_memory"] = self.max_memory
        if self.offload_folder is not None:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs


def parse_placement(
    device_map: str | None, max_memory: str | None, offload_folder: str | None, device: str | None, processes: int
) -> Placement:
    """The placement the model arguments ask for; what cannot work together is refused naming the arguments."""
    if is_unset(device_map):
        for name, value in (("max_memory", max_memory), ("offload_folder", offload_folder)):
            if not is_unset(value):
                raise ValueError(f"{name} places a sharded model: it needs device_map (e.g. device_map=auto)")
        return Placement()
    if device not in (None, "", "auto"):
        raise ValueError(
            f"device={device} and device_map={device_map}: choose one (device puts the whole model on one device, "
            "device_map shards it)"
        )
    if processes > 1:
        raise ValueError(
            f"device_map={device_map} with {processes} processes: one process holds one sharded copy across the GPUs "
            "it sees; launch one process for a sharded model, or drop device_map for data parallelism"
        )
    if device_map in STRATEGIES:
        mapping: str | dict = device_map
    else:
        path = Path(device_map).expanduser()
        if not path.is_file():
            raise ValueError(
                f"device_map={device_map}: neither a strategy ({', '.join(STRATEGIES)}) nor a JSON file of "
                "module name -> device"
            )
        mapping = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(mapping, dict) or not mapping:
            raise ValueError(f"device_map={device_map}: the file must hold a JSON object of module name -> device")
    return Placement(
        mapping, parse_max_memory(max_memory), str(Path(offload_folder).expanduser()) if offload_folder else None
    )


def parse_max_memory(text: str | None) -> dict | None:
    """``0:70GiB;1:70GiB;cpu:200GiB`` -> ``{0: "70GiB", 1: "70GiB", "cpu": "200GiB"}``."""
    if is_unset(text):
        return None
    memory: dict = {}
    for part in str(text).split(";"):
        if not part.strip():
            continue
        found = _MEMORY.match(part)
        if found is None:
            raise ValueError(
                f"max_memory={text}: each entry is DEVICE:SIZE (0:70GiB, cpu:200GiB, disk:1TiB), separated by ';'"
            )
        device, size = found.group(1), found.group(2).replace(" ", "")
        memory[int(device) if device.isdigit() else device] = size
    return memory


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a sharded model's inputs go: the execution device of its input embeddings (the first layer)."""
    embeddings = model.get_input_embeddings()
    hook = getattr(embeddings, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    weight = next(embeddings.parameters())
    return weight.device if weight.device.type != "meta" else torch.device("cpu")
