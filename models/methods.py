"""Every method registered once; the models, the sweep, the viewer, the benchmarks, the demo and the reproduction read
this registry, and the docs' argument tables are checked against it (``tests/e2e/test_docs.py``).

A method is one file in ``models/`` (its declaration, a :class:`~models.spec.MethodSpec`, beside its runner) over its
math in ``interventions/``; this registry lists them. A declaration holds: its parameter object (the numbers that shape
an answer, with their defaults, their validation and the neutral setting that changes nothing), what each argument
means, its other model arguments with their defaults, which parameters a sweep may vary, the viewer's slider ranges,
and its runner. Its presets live in ``models/presets.json`` (``models.presets``), keyed by the method's name. Every
method runs as one model per naming scheme (``models.names``): ``qwen3vl_<name>`` (Qwen3-VL checkpoints, the names of
the reference study) and ``vlm_<name>`` (any supported family, detected from the checkpoint's config); ``plugin``
registers their lmms-eval classes. docs/DEVELOPMENT.md, "Adding a method", walks through a new one.
"""

from __future__ import annotations

from models.adaptvis import ADAPTVIS
from models.clvs import CLVS_METHOD
from models.names import is_baseline, model_names, scheme_of
from models.pai import PAI_METHOD
from models.spec import PRESET, Argument, MethodSpec
from models.vaf import VAF_METHOD
from models.vea import VEA_METHOD

__all__ = [
    "ADAPTVIS",
    "CLVS_METHOD",
    "METHODS",
    "PAI_METHOD",
    "PRESET",
    "VAF_METHOD",
    "VEA_METHOD",
    "Argument",
    "MethodSpec",
    "method_of_model",
]

METHODS: dict[str, MethodSpec] = {
    method.name: method for method in (ADAPTVIS, CLVS_METHOD, VEA_METHOD, PAI_METHOD, VAF_METHOD)
}


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
