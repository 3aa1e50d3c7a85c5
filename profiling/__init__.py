"""VEA's layer profiling (``python -m profiling``): which decoder layers' last-row attention lands on the caption's
objects, scored by AUROC against COCO boxes on VSR train rows.

A package of its own, between ``models`` (which profiles on first use through it) and ``vsr_tasks``: it reads VSR rows
and COCO files and renders the prompt with the same user-turn code as the engine (``families.turns``), as an
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
