"""lmms-eval model wrappers for Qwen3-VL: the baseline and one subclass per intervention.

``manifests()`` is the ``lmms_eval.models`` entry point. lmms-eval calls it
while building its model registry, which is also our one chance to make the
VSR tasks visible to a bare ``lmms-eval --tasks ...`` (see vsr_tasks.registration).
"""

from __future__ import annotations

MODEL_CLASSES = {
    "qwen3vl": "models.qwen3vl.Qwen3VL",
    "qwen3vl_adaptvis": "models.qwen3vl_adaptvis.Qwen3VLAdaptVis",
    "qwen3vl_vea": "models.qwen3vl_vea.Qwen3VLVEA",
    "qwen3vl_clvs": "models.qwen3vl_clvs.Qwen3VLCLVS",
}


def manifests() -> list:
    """Model manifests for lmms-eval's registry (and the VSR task folder as a side effect)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from vsr_tasks.registration import register_task_folder

    register_task_folder()
    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in MODEL_CLASSES.items()]
