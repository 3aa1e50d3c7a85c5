"""The lmms-eval model classes, generated: one per naming scheme (``models.names``) and method (``models.methods``).

Each class is the adapter (``plugin.vlm.VLM``) with the scheme's name, the model types it takes and its method (None:
the baseline), so a new method or scheme adds its models here without a line of code. They are module attributes (``Qwen3VLAdaptVis``,
``VLMBaseline``, ...) so that lmms-eval's ``module.Class`` paths and pickling find them.
"""

from __future__ import annotations

from models.methods import METHODS
from models.names import SCHEMES
from plugin import class_name
from plugin.vlm import VLM


def _generate() -> dict[str, type]:
    classes = {}
    for scheme in SCHEMES:
        for method in (None, *METHODS.values()):
            name = class_name(scheme, method)
            what = "the baseline" if method is None else method.title
            takes = "every supported family" if scheme.model_types is None else ", ".join(scheme.model_types)
            classes[name] = type(
                name,
                (VLM,),
                {
                    "MODEL_NAME": scheme.name(None if method is None else method.name),
                    "FAMILIES": scheme.model_types,
                    "METHOD": method,
                    "__module__": __name__,
                    "__qualname__": name,
                    "__doc__": f"{what} on {takes} (``--model {scheme.name(None if method is None else method.name)}``).",
                },
            )
    return classes


globals().update(_generate())
