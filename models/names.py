"""Every ``--model`` name, derived from two naming schemes and the method names: nothing else spells one.

A model name is a scheme's prefix and a method (``qwen3vl_adaptvis``, ``vlm_clvs``) or the scheme's baseline
(``qwen3vl``, ``vlm_baseline``). The reference study's scheme takes Qwen3-VL checkpoints (dense and MoE) only, so its
command lines keep meaning what they meant; the ``vlm`` scheme takes every supported family. The method names come
from the method registry (``models.methods.METHODS``), passed in by the callers that know them.

Why its own module: the analysis and the command lines ask "is this run a baseline?" and "which model runs this
method on this checkpoint?" without importing torch (``models/__init__.py`` imports nothing heavy either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NamingScheme:
    """One family of ``--model`` names: ``{prefix}_{method}`` and a baseline, for the model types it takes."""

    prefix: str
    baseline: str
    model_types: tuple[str, ...] | None  # None: every supported family
    class_prefix: str  # the generated lmms-eval classes' names: ``Qwen3VLAdaptVis``, ``VLMBaseline``

    def name(self, method: str | None) -> str:
        """The model that runs ``method`` (None: the baseline) under this scheme."""
        return self.baseline if method is None else f"{self.prefix}_{method}"

    def takes(self, model_type: str) -> bool:
        return self.model_types is None or model_type in self.model_types


# the reference study's names: Qwen3-VL, dense and mixture-of-experts (30B-A3B, 235B-A22B)
STUDY = NamingScheme(
    prefix="qwen3vl", baseline="qwen3vl", model_types=("qwen3_vl", "qwen3_vl_moe"), class_prefix="Qwen3VL"
)
ANY_FAMILY = NamingScheme(prefix="vlm", baseline="vlm_baseline", model_types=None, class_prefix="VLM")
SCHEMES: tuple[NamingScheme, ...] = (STUDY, ANY_FAMILY)  # the first scheme that takes a family names its models
DEFAULT_BASELINE = STUDY.baseline  # the analysis' baseline when none is named
DEFAULT_PRETRAINED = "Qwen/Qwen3-VL-2B-Instruct"  # the checkpoint of a bare --model, and what finetune starts from


def model_name(method: str | None, model_type: str) -> str:
    """The ``--model`` that runs ``method`` (None: the baseline) on a ``model_type`` checkpoint: the study's names on
    Qwen3-VL (dense and MoE, so that its runs pair with the study's), ``vlm_*`` on every other family."""
    for scheme in SCHEMES:
        if scheme.takes(model_type):
            return scheme.name(method)
    raise KeyError(f"no naming scheme takes model_type {model_type!r}")


def model_names(methods: Iterable[str]) -> list[str]:
    """Every ``--model`` name: per scheme, its baseline and then each method's model."""
    methods = list(methods)
    return [scheme.name(method) for scheme in SCHEMES for method in (None, *methods)]


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a baseline model (no method), under any scheme."""
    return any(name == scheme.baseline for scheme in SCHEMES)


def scheme_of(name: str, methods: Iterable[str]) -> tuple[NamingScheme, str | None]:
    """``(scheme, method)`` of a model name (method None: the baseline); an unknown name is refused with the known."""
    methods = list(methods)
    for scheme in SCHEMES:
        for method in (None, *methods):
            if scheme.name(method) == name:
                return scheme, method
    raise KeyError(f"unknown model {name!r}; the models are {', '.join(model_names(methods))}")
