"""lmms-eval model wrappers: the baseline and one model per method, for any supported family (``vlm_*``) and for
Qwen3-VL under the reference study's names (``qwen3vl*``).

``manifests()`` is the ``lmms_eval.models`` entry point. lmms-eval calls it while building its model registry,
which is also our one chance to make the VSR tasks visible to a bare ``lmms-eval --tasks ...`` (see
vsr_tasks.registration). The names come from the naming schemes (``models.names``) and the method registry
(``models.methods``); this package imports nothing heavy until a model is asked for.
"""

from __future__ import annotations


def model_classes() -> dict[str, str]:
    """``--model`` name -> ``module.Class`` of every model this plugin registers."""
    from models.methods import model_classes as classes

    return classes()


def model_class(name: str) -> type:
    """The lmms-eval class of ``--model name``; an unknown name is refused with the known ones."""
    import importlib

    classes = model_classes()
    if name not in classes:
        raise KeyError(f"unknown model {name!r}; the models are {', '.join(classes)}")
    module, class_name = classes[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), class_name)


def manifests() -> list:
    """Model manifests for lmms-eval's registry (and the VSR task folder as a side effect)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from vsr_tasks.registration import register_task_folder

    register_task_folder()
    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in model_classes().items()]
