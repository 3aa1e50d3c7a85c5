"""Named sets of method arguments (``preset=NAME``), kept in one data file: ``models/presets.json``.

Why: the reference study's settings differ per split (AdaptVis smoothens with 0.2 on random and 0.1
on zeroshot, VEA blurs and dims differently, its profiled layers differ). Twelve evaluations with
hand-written arguments invite a typo; a preset names them once. Precedence, per argument: an explicit
model argument, then the preset, then the model's own default. For VEA the evidence layers are one
choice: any explicit source (``layers``, ``layers_file``, ``coco_annotations_dir``) replaces the
preset's ``layers``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.arguments import is_unset

PRESETS_FILE = Path(__file__).with_name("presets.json")


@lru_cache(maxsize=1)
def presets() -> dict[str, dict]:
    """Every preset in :data:`PRESETS_FILE`: name -> {"about": str, model name -> arguments}."""
    return json.loads(PRESETS_FILE.read_text(encoding="utf-8"))


NOT_ARGUMENTS = ("source",)  # where a preset's numbers come from (the authors' file and line): shown, never passed


def preset_arguments(
    preset: str, method: str, model_type: str | None = None, depth: int | None = None, skip_depth: bool = False
) -> dict[str, Any]:
    """The arguments ``preset`` sets for ``method`` (``adaptvis``, ``clvs``, ``vea``). A value that depends on the
    model family is under ``by_family``, keyed by ``model_type``; one that depends on the checkpoint's size (VEA's
    profiled layers) under the family's ``by_depth``, keyed by the number of decoder layers. An unknown preset, or
    a family or depth the preset has no settings for, is refused naming what it has."""
    known = presets()
    if preset not in known:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(sorted(known))}")
    values = {key: value for key, value in known[preset].get(method, {}).items() if key not in NOT_ARGUMENTS}
    by_family = values.pop("by_family", {})
    if by_family:
        if model_type not in by_family:
            raise ValueError(
                f"preset {preset!r} has {method} settings for {', '.join(sorted(by_family))} checkpoints only, "
                f"not for model_type {model_type!r}"
            )
        family_values = dict(by_family[model_type])
        by_depth = family_values.pop("by_depth", {})
        values.update(family_values)
        if by_depth and not skip_depth:
            if str(depth) not in by_depth:
                sizes = ", ".join(f"{d}-layer" for d in sorted(by_depth, key=int))
                raise ValueError(
                    f"preset {preset!r} has {method} settings for {sizes} {model_type} checkpoints, not for one with "
                    f"{depth} decoder layers: pass the setting it lacks explicitly (VEA: layers=[...] or "
                    "coco_annotations_dir to profile them)"
                )
            values.update(by_depth[str(depth)])
    return values


REFERENCE_PRESET = "seed_random"  # the reference study's profile of VEA's layers ...
REFERENCE_DEPTH = 28  # ... on Qwen3-VL-2B, whose decoder has 28 layers


def scaled_vea_layers(depth: int) -> list[int]:
    """VEA's layers where the reference study's profiling put them (``seed_random``: 17, 20, 24 of 28), placed at the
    same relative depth of a ``depth``-layer decoder: a default where no profile of the checkpoint exists (the
    viewer's live re-runs, the benchmarks)."""
    layers = presets()[REFERENCE_PRESET]["vea"]["layers"]
    return sorted({min(depth - 1, int(layer / REFERENCE_DEPTH * depth)) for layer in layers})


LAYER_RANGE_DEPTH = 32  # LLaVA-1.5-7B's decoder, where PAI (README.md:65) and VAF (infer_pope.py:54) set their layers


def scaled_layer_range(params: Any, depth: int) -> dict[str, int]:
    """A method's ``[start_layer, end_layer)`` (its parameter object's; end None: the whole depth) placed at the same
    relative depth of a ``depth``-layer decoder, one layer at least: a default for models shallower than the papers'
    (the demo's, the benchmarks' wide shapes), never for a real run (which gives its own or takes the paper's)."""
    end = LAYER_RANGE_DEPTH if params.end_layer is None else params.end_layer
    start = min(depth - 1, params.start_layer * depth // LAYER_RANGE_DEPTH)
    return {"start_layer": start, "end_layer": max(start + 1, min(depth, end * depth // LAYER_RANGE_DEPTH))}


def preset_source(preset: str, method: str) -> str | None:
    """Where ``preset``'s ``method`` settings come from (the authors' file), when the preset says."""
    return presets().get(preset, {}).get(method, {}).get("source")


def resolve(
    method: str,
    preset: str | None,
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    exclusive: Iterable[str] = (),
    model_type: str | None = None,
    depth: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(values, from_preset)``: explicit arguments (not None) win over the preset, the preset over ``defaults``.

    ``exclusive`` names arguments that are alternatives to one another: when any of them is given explicitly,
    the preset sets none of them.
    """
    values = dict(defaults)
    from_preset: dict[str, Any] = {}
    if not is_unset(preset):
        exclusive = set(exclusive)
        explicit_alternative = any(given.get(name) is not None for name in exclusive)
        try:
            from_preset = preset_arguments(preset, method, model_type, depth)
        except ValueError:
            if not explicit_alternative:  # the depth-dependent setting is given explicitly: the rest still applies
                raise
            from_preset = preset_arguments(preset, method, model_type, depth, skip_depth=True)
        if explicit_alternative:
            from_preset = {key: value for key, value in from_preset.items() if key not in exclusive}
        from_preset = {key: value for key, value in from_preset.items() if given.get(key) is None}
        values.update(from_preset)
    values.update({key: value for key, value in given.items() if value is not None})
    return values, from_preset
