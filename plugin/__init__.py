"""The lmms-eval plugin: the baseline and one model per method, for any supported family (``vlm_*``) and for
Qwen3-VL under the reference study's names (``qwen3vl*``), and the commands' way to an engine by ``--model`` name.

``manifests()`` is the ``lmms_eval.models`` entry point. lmms-eval calls it while building its model registry,
which is also our one chance to make the VSR tasks visible to a bare ``lmms-eval --tasks ...`` (see
vsr_tasks.registration). The names come from the naming schemes (``models.names``) and the method registry
(``models.methods``); this package imports nothing heavy until a model is asked for.

Why a package above ``models`` and ``profiling``: VEA profiles its layers on first use through the engine, and the
profiler (``profiling``) itself runs on an engine; this is the one place that hands the one to the other
(``plugin.loading``).
"""

from __future__ import annotations

REGISTERED_MODULE = "plugin.registered"  # where the lmms-eval classes are generated


def class_name(scheme, method) -> str:
    """The generated lmms-eval class of ``method`` (None: the baseline) under ``scheme``: ``Qwen3VLAdaptVis``."""
    return scheme.class_prefix + ("Baseline" if method is None else method.title.replace("-", ""))


def model_classes() -> dict[str, str]:
    """``--model`` name -> ``module.Class`` for lmms-eval's registry: per scheme, the baseline and each method."""
    from models.methods import METHODS
    from models.names import SCHEMES

    return {
        scheme.name(None if method is None else method.name): f"{REGISTERED_MODULE}.{class_name(scheme, method)}"
        for scheme in SCHEMES
        for method in (None, *METHODS.values())
    }


def model_class(name: str) -> type:
    """The lmms-eval class of ``--model name``; an unknown name is refused with the known ones."""
    import importlib

    classes = model_classes()
    if name not in classes:
        raise KeyError(f"unknown model {name!r}; the models are {', '.join(classes)}")
    module, attribute = classes[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), attribute)


def manifests() -> list:
    """Model manifests for lmms-eval's registry (and the VSR task folder as a side effect)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from vsr_tasks.registration import register_task_folder

    register_task_folder()
    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in model_classes().items()]
