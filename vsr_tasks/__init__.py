"""VSR (Visual Spatial Reasoning) as lmms-eval tasks: vsr_{random,zeroshot}_{dev,test} and groups."""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
TASK_NAMES = ("vsr_random_dev", "vsr_random_test", "vsr_zeroshot_dev", "vsr_zeroshot_test")
HELDOUT_TASK_NAMES = ("vsr_random_heldout", "vsr_zeroshot_heldout")  # finetune's held-out train rows, for tuning
GROUP_NAMES = ("vsr_random", "vsr_zeroshot", "vsr")
# the AdaptVis paper's protocol on its parts of the zeroshot test split (vsr_tasks/adaptvis_protocol.py)
ADAPTVIS_TASK_NAMES = ("vsr_zeroshot_test_adaptvis", "vsr_zeroshot_test_adaptvis_tune")
