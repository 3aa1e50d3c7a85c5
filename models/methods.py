"""Every method declared once; the models, the sweep, the viewer, the benchmarks, the demo and the reproduction read
this registry, and the docs' argument tables are checked against it (``tests/test_docs.py``).

A method's declaration holds: its parameter object (``interventions``: the numbers that shape an answer, with their
defaults, their validation and the neutral setting that changes nothing), what each argument means, its other model
arguments with their defaults, which parameters a sweep may vary, the viewer's slider ranges, and its model class.
Its presets live in ``models/presets.json`` (``models.presets``), keyed by the method's name. Every method runs as two
models: ``qwen3vl_<name>`` (Qwen3-VL checkpoints, the names of the reference study) and ``vlm_<name>`` (any supported
family, detected from the checkpoint's config).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interventions.adaptvis import AdaptVisParams
from interventions.clvs import CLVSParams
from interventions.vea import VEAParams

QWEN3_PREFIX = "qwen3vl"
ANY_FAMILY_PREFIX = "vlm"
BASELINES = {QWEN3_PREFIX: "models.qwen3vl.Qwen3VL", f"{ANY_FAMILY_PREFIX}_baseline": "models.vlm.VLM"}


@dataclass(frozen=True)
class Argument:
    """A model argument: its default and what it means. ``shown`` is the docs' default when it is found at run time
    (an environment variable, a folder); ``group`` places it in a second table (VEA's profiling arguments)."""

    name: str
    default: Any
    meaning: str
    shown: str | None = None
    group: str = ""


@dataclass(frozen=True)
class Method:
    """One intervention, as every part of the project sees it."""

    name: str
    title: str
    params: type
    meanings: Mapping[str, str]  # parameter -> meaning, for every field of ``params``
    extra: tuple[Argument, ...]  # the method's other model arguments, after the parameters
    sweepable: tuple[str, ...]
    sliders: Mapping[str, tuple[float, float, float]]  # parameter -> (minimum, maximum, step) in the viewer
    wrapper: str  # the model class, ``module.Class``
    exclusive: tuple[str, ...] = ()  # arguments that are alternatives: any explicit one replaces a preset's
    needs_image_grid: bool = False  # whether it maps image tokens to cells of each image (not just finds them)
    summary: str = ""
    models: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        fields = [f.name for f in dataclasses.fields(self.params)]
        if list(self.meanings) != fields:
            raise ValueError(f"{self.name}: meanings must describe {fields} in that order, got {list(self.meanings)}")
        object.__setattr__(self, "models", (f"{QWEN3_PREFIX}_{self.name}", f"{ANY_FAMILY_PREFIX}_{self.name}"))

    @property
    def neutral(self) -> dict[str, Any]:
        """The setting that cannot change an answer (the paired baseline of every sweep)."""
        return dict(self.params.NEUTRAL)

    def arguments(self) -> list[Argument]:
        """Every model argument in the docs' order: the parameters, the others, then ``preset``."""
        params = [
            Argument(f.name, f.default, self.meanings[f.name]) for f in dataclasses.fields(self.params)
        ]  # the parameters' defaults are the dataclass's own
        return [*params, *self.extra, PRESET]

    def defaults(self) -> dict[str, Any]:
        return {argument.name: argument.default for argument in self.arguments() if argument.name != "preset"}

    def is_neutral(self, point: Any) -> bool:
        return all(getattr(point, name) == value for name, value in self.neutral.items())


PRESET = Argument("preset", None, "a named set of the method's arguments (`models/presets.json`; the table below)")
LAYERS_FORMAT = "`all`, `[0,1,2,20]` or with inclusive ranges `[0-13,20]` (0-based decoder layers)"

ADAPTVIS = Method(
    name="adaptvis",
    title="AdaptVis",
    summary="the first token's confidence picks a weight per sequence, which scales the last prompt row's "
    "image-attention logits",
    params=AdaptVisParams,
    meanings={
        "confidence_threshold": "confidence below it: `smoothen_weight`, else `sharpen_weight`",
        "sharpen_weight": "`alpha` for confident sequences",
        "smoothen_weight": "`alpha` for unsure sequences",
    },
    extra=(Argument("layers", "all", LAYERS_FORMAT),),
    sweepable=("confidence_threshold", "sharpen_weight", "smoothen_weight"),
    sliders={
        "confidence_threshold": (0.0, 1.0, 0.01),
        "sharpen_weight": (1.0, 3.0, 0.05),
        "smoothen_weight": (0.0, 1.0, 0.05),
    },  # over the ranges of the study's own demo app
    wrapper="models.adaptvis.AdaptVisModel",
)

CLVS_METHOD = Method(
    name="clvs",
    title="CLVS",
    summary="a position-unbiased layer 0 and a vision memory mixed into later layers' last row, stopped per sequence "
    "by the logit lens",
    params=CLVSParams,
    meanings={
        "smoothing": "`s` in `w_I <- s * w_I + (1 - s) * m` (1: no mixing)",
        "window_memory_size": "`r` in `m <- r * m + (1 - r) * max_heads(w_I)`",
        "uncertainty_threshold": "normalised top-10 logit-lens entropy below which smoothing stops (layers `l > L // 2`)",
        "position_unbiased": "layer 0's last row with each image at one position (`false`: plain layer 0)",
        "logit_lens_norm": "the final norm before `lm_head` in the logit lens (`false`: the authors' code)",
    },
    extra=(),
    sweepable=("smoothing", "window_memory_size", "uncertainty_threshold"),
    sliders={
        "smoothing": (0.0, 1.0, 0.05),
        "window_memory_size": (0.0, 1.0, 0.05),
        "uncertainty_threshold": (0.0, 1.0, 0.05),
    },
    wrapper="models.clvs.CLVSModel",
)

PROFILING = "profiling"
VEA_METHOD = Method(
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
        Argument("layers_file", None, "a JSON written by `python -m interventions.vea profile`"),
        Argument(
            "coco_annotations_dir",
            None,
            "profile the layers on first use on VSR train rows (its arguments: "
            "[docs/METHODS.md](docs/METHODS.md#layer-profiling))",
            shown="`$COCO_ANNOTATIONS_DIR`",
        ),
        Argument("hint", False, 'append "Focus on the highlighted (brighter) region of the image." to each prompt'),
        Argument("vsr_data_dir", None, "where the train rows are", shown="`$VSR_DATA_DIR`", group=PROFILING),
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
    wrapper="models.vea.VEAModel",
    exclusive=("layers", "layers_file", "coco_annotations_dir"),
    needs_image_grid=True,
)

METHODS: dict[str, Method] = {method.name: method for method in (ADAPTVIS, CLVS_METHOD, VEA_METHOD)}


def method_of_model(model: str) -> Method:
    """The method a model name runs (``qwen3vl_adaptvis`` and ``vlm_adaptvis`` both run AdaptVis)."""
    for method in METHODS.values():
        if model in method.models:
            return method
    known = [name for method in METHODS.values() for name in method.models]
    raise KeyError(f"{model!r} runs no method; the models with one are {', '.join(known)}")


def model_classes() -> dict[str, str]:
    """``--model`` name -> ``module.Class`` for lmms-eval's registry: the baselines, then each method's two models."""
    classes = dict(BASELINES)
    for method in METHODS.values():
        qwen3, any_family = method.models
        classes[qwen3] = f"models.qwen3vl.{_qwen3_class(method)}"
        classes[any_family] = method.wrapper
    return classes


def _qwen3_class(method: Method) -> str:
    return "Qwen3VL" + method.title.replace("-", "")


def shown_default(argument: Argument) -> str:
    """An argument's default as the docs show it."""
    if argument.shown is not None:
        return argument.shown
    value = argument.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def argument_table(rows: list[Argument]) -> str:
    """A docs table of model arguments (what ``tests/test_docs.py`` compares the README's tables with)."""
    lines = ["| argument | default | meaning |", "|---|---|---|"]
    lines += [f"| `{row.name}` | {shown_default(row)} | {row.meaning} |" for row in rows]
    return "\n".join(lines)


def method_tables(method: Method) -> dict[str, str]:
    """The method's docs tables: ``""`` (its arguments, README) and one per argument group."""
    groups: dict[str, list[Argument]] = {}
    for argument in method.arguments():
        groups.setdefault(argument.group, []).append(argument)
    return {group: argument_table(rows) for group, rows in groups.items()}
