"""lmms-eval model wrappers: the baseline and one model per method, for any supported family (``vlm_*``) and for
Qwen3-VL under the reference study's names (``qwen3vl*``).

``manifests()`` is the ``lmms_eval.models`` entry point. lmms-eval calls it while building its model registry,
which is also our one chance to make the VSR tasks visible to a bare ``lmms-eval --tasks ...`` (see
vsr_tasks.registration). The names come from the method registry (``models.methods``).
"""

from __future__ import annotations

from models.methods import model_classes

MODEL_CLASSES = model_classes()


def manifests() -> list:
    """Model manifests for lmms-eval's registry (and the VSR task folder as a side effect)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from vsr_tasks.registration import register_task_folder

    register_task_folder()
    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in MODEL_CLASSES.items()]
