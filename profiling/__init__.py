"""VEA's layer profiling (``python -m profiling``): which decoder layers' last-row attention lands on the caption's
objects, scored by AUROC against COCO boxes on VSR train rows.

A package above the engine (``models``): it profiles on a loaded engine, with the evaluation's prompt, and VEA's
first-use profiling reaches it through the engine's layer profiler, which ``plugin`` supplies. It reads VSR rows and
COCO files, none of which the method's math (``interventions.vea``) may know. One job per module: ``coco`` (boxes and
the tokens they cover), ``samples`` (which train rows can profile), ``scores`` (AUROC, the layers kept), ``profile``
(the prefills), ``cli`` (the command).
"""

from models.vea_layers import COCO_ANNOTATIONS_VARIABLE, read_layers_file
from profiling.errors import ProfilingError
from profiling.profile import profile_layers, run_profile
from profiling.scores import top_layers

__all__ = [
    "COCO_ANNOTATIONS_VARIABLE",
    "ProfilingError",
    "profile_layers",
    "read_layers_file",
    "run_profile",
    "top_layers",
]
