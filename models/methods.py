"""Every method declared once; the models, the sweep, the viewer, the benchmarks, the demo and the reproduction read
this registry, and the docs' argument tables are checked against it (``tests/e2e/test_docs.py``).

A method's declaration holds: its parameter object (``interventions``: the numbers that shape an answer, with their
defaults, their validation and the neutral setting that changes nothing), what each argument means, its other model
arguments with their defaults, which parameters a sweep may vary, the viewer's slider ranges, and its runner.
Its presets live in ``models/presets.json`` (``models.presets``), keyed by the method's name. Every method runs as one
model per naming scheme (``models.names``): ``qwen3vl_<name>`` (Qwen3-VL checkpoints, the names of the reference
study) and ``vlm_<name>`` (any supported family, detected from the checkpoint's config); ``models.registered``
generates their lmms-eval classes from this registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interventions.adaptvis import AdaptVisParams
from interventions.clvs import CLVSParams
from interventions.vea import VEAParams
from models.names import SCHEMES, NamingScheme, is_baseline, model_names, scheme_of

ADAPTER = "models.vlm.VLM"  # the lmms-eval class every registered model specialises, ``module.Class``
REGISTERED_MODULE = "models.registered"  # where the lmms-eval classes are generated


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
class MethodSpec:
    """One intervention, as every part of the project sees it (the runtime object a forward consults is
    ``interventions.state.RowEditor``)."""

    name: str
    title: str
    params: type
    meanings: Mapping[str, str]  # parameter -> meaning, for every field of ``params``
    extra: tuple[Argument, ...]  # the method's other model arguments, after the parameters
    sweepable: tuple[str, ...]
    sliders: Mapping[str, tuple[float, float, float]]  # parameter -> (minimum, maximum, step) in the viewer
    runner: str  # how the engine runs it (``models.runner.MethodRunner``), ``module.Class``
    exclusive: tuple[str, ...] = ()  # arguments that are alternatives: any explicit one replaces a preset's
    needs_image_grid: bool = False  # whether it maps image tokens to cells of each image (not just finds them)
    summary: str = ""

    def __post_init__(self) -> None:
        fields = [f.name for f in dataclasses.fields(self.params)]
        if list(self.meanings) != fields:
            raise ValueError(f"{self.name}: meanings must describe {fields} in that order, got {list(self.meanings)}")

    @property
    def models(self) -> tuple[str, ...]:
        """The method's model under each naming scheme (``qwen3vl_<name>``, ``vlm_<name>``)."""
        return tuple(scheme.name(self.name) for scheme in SCHEMES)

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
LAYERS_FORMAT = "`all`, `[0,1,2,20]`, inclusive ranges `[0-13,20]` or `<32` (those below 32); 0-based"

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
    runner="models.adaptvis.AdaptVisRunner",
)

CLVS_METHOD = MethodSpec(
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
    runner="models.clvs.CLVSRunner",
)

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
            "[docs/METHODS.md](docs/METHODS.md#layer-profiling))",
            shown="`$COCO_ANNOTATIONS_DIR`",
        ),
        Argument("hint", False, '`true`: append "Focus on the highlighted (brighter) region of the image."; or a text'),
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
    runner="models.vea.VEARunner",
    exclusive=("layers", "layers_file", "coco_annotations_dir"),
    needs_image_grid=True,
)

METHODS: dict[str, MethodSpec] = {method.name: method for method in (ADAPTVIS, CLVS_METHOD, VEA_METHOD)}


def method_of_model(model: str) -> MethodSpec:
    """The method a model name runs (``qwen3vl_adaptvis`` and ``vlm_adaptvis`` both run AdaptVis)."""
    try:
        _, method = scheme_of(model, METHODS)
    except KeyError:
        method = None
    if method is None:
        known = [name for name in model_names(METHODS) if not is_baseline(name)]
        raise KeyError(f"{model!r} runs no method; the models with one are {', '.join(known)}")
    return METHODS[method]


def class_name(scheme: NamingScheme, method: MethodSpec | None) -> str:
    """The generated lmms-eval class of ``method`` (None: the baseline) under ``scheme``: ``Qwen3VLAdaptVis``."""
    return scheme.class_prefix + ("Baseline" if method is None else method.title.replace("-", ""))


def model_classes() -> dict[str, str]:
    """``--model`` name -> ``module.Class`` for lmms-eval's registry: per scheme, the baseline and each method."""
    return {
        scheme.name(None if method is None else method.name): f"{REGISTERED_MODULE}.{class_name(scheme, method)}"
        for scheme in SCHEMES
        for method in (None, *METHODS.values())
    }


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
    """A docs table of model arguments (what ``tests/e2e/test_docs.py`` compares the README's tables with)."""
    lines = ["| argument | default | meaning |", "|---|---|---|"]
    lines += [f"| `{row.name}` | {shown_default(row)} | {row.meaning} |" for row in rows]
    return "\n".join(lines)


def method_tables(method: MethodSpec) -> dict[str, str]:
    """The method's docs tables: ``""`` (its arguments, README) and one per argument group."""
    groups: dict[str, list[Argument]] = {}
    for argument in method.arguments():
        groups.setdefault(argument.group, []).append(argument)
    return {group: argument_table(rows) for group, rows in groups.items()}
