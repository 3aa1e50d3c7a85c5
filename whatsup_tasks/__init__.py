"""WhatsUp (Kamath et al., EMNLP 2023) as lmms-eval tasks, with AdaptVis' generative protocol.

``whatsup_controlled_a``, ``whatsup_controlled_b``, ``whatsup_coco_one``, ``whatsup_coco_two``, ``whatsup_vg_one``,
``whatsup_vg_two`` and the group ``whatsup``: the official annotation files (amitakamath/whatsup_vlms) under
``$WHATSUP_DATA_DIR``, each question asked as AdaptVis asks it and scored as AdaptVis scores it. Each subset's AdaptVis
parts (``local_tasks.adaptvis_split``): ``<task>_adaptvis`` (the rows its published numbers are measured on) and
``<task>_adaptvis_tune``, grouped as ``whatsup_adaptvis`` and ``whatsup_adaptvis_tune``.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
TASK_NAMES = (
    "whatsup_controlled_a",
    "whatsup_controlled_b",
    "whatsup_coco_one",
    "whatsup_coco_two",
    "whatsup_vg_one",
    "whatsup_vg_two",
)
GROUP_NAME = "whatsup"
ADAPTVIS_TASK_NAMES = tuple(task + "_adaptvis" for task in TASK_NAMES)  # AdaptVis' test part of each subset
ADAPTVIS_TUNE_TASK_NAMES = tuple(task + "_adaptvis_tune" for task in TASK_NAMES)  # its tuning fifth
ADAPTVIS_GROUP_NAMES = ("whatsup_adaptvis", "whatsup_adaptvis_tune")
