"""VEA's layer profiling (``python -m profiling``): which decoder layers' last-row attention lands on the caption's
objects, scored by AUROC against COCO boxes on VSR train rows.

A package of its own, above ``models`` and ``vsr_tasks``: it reads VSR rows and COCO files and prompts the model as an
evaluation does, none of which the method's math (``interventions.vea``) may know.
"""

from profiling.layers import (
    COCO_ANNOTATIONS_VARIABLE,
    ProfilingError,
    profile_layers,
    read_layers_file,
    run_profile,
    top_layers,
)

__all__ = [
    "COCO_ANNOTATIONS_VARIABLE",
    "ProfilingError",
    "profile_layers",
    "read_layers_file",
    "run_profile",
    "top_layers",
]
